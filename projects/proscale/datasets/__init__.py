# Copyright (c) The proscale Authors. All rights reserved.
from .cityscapes_panoptic import CityscapesPanopticDataset, cityscapes_city
from .converters import convert_cityscapes_panoptic
from .synthetic_panoptic import (SYNTHETIC_PANOPTIC_METAINFO,
                                 generate_synthetic_panoptic)

__all__ = [
    'CityscapesPanopticDataset', 'SYNTHETIC_PANOPTIC_METAINFO',
    'cityscapes_city', 'convert_cityscapes_panoptic',
    'generate_synthetic_panoptic'
]
