# Copyright (c) The proscale Authors. All rights reserved.
from .eco_mask2former import EcoMask2Former
from .proscale_detr import (ProScaleDeformableDETR, ProScaleDINO,
                            ProScaleEncoderMixin)

__all__ = [
    'EcoMask2Former', 'ProScaleDeformableDETR', 'ProScaleDINO',
    'ProScaleEncoderMixin'
]
