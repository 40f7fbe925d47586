from .synthetic_panoptic import (SYNTHETIC_PANOPTIC_METAINFO,
                                 generate_synthetic_panoptic)
from .cityscapes_panoptic import CityscapesPanopticDataset, cityscapes_city
from .converters import convert_cityscapes_panoptic
