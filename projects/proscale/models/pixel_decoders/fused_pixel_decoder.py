# Copyright (c) The proscale Authors. All rights reserved.
from mmdet.models.layers import MSDeformAttnPixelDecoder
from mmdet.registry import MODELS

from ..layers import FusedMultiScaleDeformableAttention


@MODELS.register_module()
class FusedMSDeformAttnPixelDecoder(MSDeformAttnPixelDecoder):
    """mmdet's ``MSDeformAttnPixelDecoder`` on the fused CPU kernel.

    The Mask2Former baseline of this project's configs: mmdet's decoder with
    the same arguments, parameters, state_dict and outputs, whose encoder's
    deformable attention is :class:`FusedMultiScaleDeformableAttention`.

    Args:
        **kwargs: Arguments of mmdet's ``MSDeformAttnPixelDecoder``.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        FusedMultiScaleDeformableAttention.convert(self.encoder)
