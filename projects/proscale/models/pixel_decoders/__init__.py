# Copyright (c) The proscale Authors. All rights reserved.
from .fused_pixel_decoder import FusedMSDeformAttnPixelDecoder
from .proscale_pixel_decoder import (EarlyExitMSDeformAttnPixelDecoder,
                                     ProScalePixelDecoder)

__all__ = [
    'FusedMSDeformAttnPixelDecoder', 'ProScalePixelDecoder',
    'EarlyExitMSDeformAttnPixelDecoder'
]
