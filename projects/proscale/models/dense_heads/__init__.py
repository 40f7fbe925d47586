# Copyright (c) The proscale Authors. All rights reserved.
from .eco_mask2former_head import EcoMask2FormerHead, PixelDecoderOutput

__all__ = ['EcoMask2FormerHead', 'PixelDecoderOutput']
