# Copyright (c) The proscale Authors. All rights reserved.
from .early_exit import EarlyExitMixin
from .eco_dino import EcoDINO
from .eco_mask2former import EcoMask2Former
from .proscale_detr import (ProScaleDeformableDETR, ProScaleDINO,
                            ProScaleEncoderMixin)

__all__ = [
    'EarlyExitMixin', 'EcoDINO', 'EcoMask2Former', 'ProScaleDeformableDETR',
    'ProScaleDINO', 'ProScaleEncoderMixin'
]
