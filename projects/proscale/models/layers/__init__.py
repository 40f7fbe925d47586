# Copyright (c) The proscale Authors. All rights reserved.
from .fused_ms_deform_attn import FusedMultiScaleDeformableAttention
from .light_pixel_embedding import LightPixelEmbedding
from .progressive_detr_encoder import (ProScaleDetrTransformerEncoder,
                                       reverse_attention_levels)
from .progressive_encoder import ProScaleTransformerEncoder
from .token_recalibration import TokenRecalibration, build_token_recalibration

__all__ = [
    'FusedMultiScaleDeformableAttention', 'LightPixelEmbedding',
    'ProScaleDetrTransformerEncoder', 'ProScaleTransformerEncoder',
    'TokenRecalibration', 'build_token_recalibration',
    'reverse_attention_levels'
]
