# Copyright (c) The proscale Authors. All rights reserved.
from .cityscapes_panoptic import CityscapesPanopticDataset, cityscapes_city
from .converters import convert_cityscapes_panoptic
from .exit_gate_dataset import (ExitGateBatchSampler, ExitGateDataset,
                                exit_gate_collate)
from .synthetic_panoptic import (SYNTHETIC_PANOPTIC_METAINFO,
                                 generate_synthetic_panoptic)

__all__ = [
    'CityscapesPanopticDataset', 'ExitGateBatchSampler', 'ExitGateDataset',
    'SYNTHETIC_PANOPTIC_METAINFO', 'cityscapes_city',
    'convert_cityscapes_panoptic', 'exit_gate_collate',
    'generate_synthetic_panoptic'
]
