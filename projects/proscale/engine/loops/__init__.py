from .derive_exit_dataset_loop import (DeriveExitDatasetLoop,
                                       derive_dataloader_cfg)
from .multi_exit_test_loop import MultiExitTestLoop, split_exit_metrics

__all__ = [
    'DeriveExitDatasetLoop', 'derive_dataloader_cfg', 'MultiExitTestLoop',
    'split_exit_metrics'
]
