# Copyright (c) The proscale Authors. All rights reserved.
from .derive_exit_dataset_loop import (DeriveExitDatasetLoop,
                                       derive_dataloader_cfg)
from .exit_policy_test_loop import (ORACLE, ExitPolicyTestLoop,
                                    policy_predictions)
from .multi_evaluator_test_loop import (MultiEvaluatorTestLoop,
                                        fixed_exit_policy,
                                        split_policy_metrics)
from .multi_exit_test_loop import MultiExitTestLoop, split_exit_metrics
from .multi_exit_val_loop import MultiExitValLoop

__all__ = [
    'DeriveExitDatasetLoop', 'derive_dataloader_cfg', 'ExitPolicyTestLoop',
    'ORACLE',
    'MultiEvaluatorTestLoop', 'MultiExitTestLoop', 'MultiExitValLoop',
    'fixed_exit_policy',
    'policy_predictions', 'split_exit_metrics', 'split_policy_metrics'
]
