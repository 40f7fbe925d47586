from .proscale_pixel_decoder import (EarlyExitMSDeformAttnPixelDecoder,
                                     ProScalePixelDecoder)

__all__ = ['ProScalePixelDecoder', 'EarlyExitMSDeformAttnPixelDecoder']
