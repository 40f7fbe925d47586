from .light_pixel_embedding import LightPixelEmbedding
from .progressive_encoder import ProScaleTransformerEncoder
from .token_recalibration import TokenRecalibration, build_token_recalibration

__all__ = [
    'LightPixelEmbedding', 'ProScaleTransformerEncoder', 'TokenRecalibration',
    'build_token_recalibration'
]
