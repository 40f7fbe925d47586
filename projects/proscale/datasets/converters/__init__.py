from .cityscapes_panoptic import (convert_cityscapes_panoptic,
                                  official_panoptic_files, official_to_mmdet)

__all__ = [
    'convert_cityscapes_panoptic', 'official_panoptic_files',
    'official_to_mmdet'
]
