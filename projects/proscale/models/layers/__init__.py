from .fused_ms_deform_attn import FusedMultiScaleDeformableAttention
from .light_pixel_embedding import LightPixelEmbedding
from .progressive_encoder import ProScaleTransformerEncoder
from .token_recalibration import TokenRecalibration

__all__ = [
    'FusedMultiScaleDeformableAttention', 'LightPixelEmbedding',
    'ProScaleTransformerEncoder', 'TokenRecalibration'
]
