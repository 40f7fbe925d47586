# Copyright (c) The proscale Authors. All rights reserved.
from .ade20k_panoptic import (convert_ade20k_panoptic, load_mmdet_ade20k2coco,
                              recompute_segment_bboxes, segment_bbox)
from .cityscapes_panoptic import (convert_cityscapes_panoptic,
                                  official_panoptic_files, official_to_mmdet)

__all__ = [
    'convert_ade20k_panoptic', 'convert_cityscapes_panoptic',
    'load_mmdet_ade20k2coco', 'official_panoptic_files', 'official_to_mmdet',
    'recompute_segment_bboxes', 'segment_bbox'
]
