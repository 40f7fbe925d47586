# Copyright (c) The proscale Authors. All rights reserved.
"""DINO and Deformable DETR with the PRO-SCALE encoder."""
from mmdet.models.detectors import DINO, DeformableDETR
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

DEFAULT_ENCODER = 'ProScaleDetrTransformerEncoder'


class ProScaleEncoderMixin:
    """Build a PRO-SCALE encoder in place of mmdet's DETR encoder.

    Mixed into a ``DeformableDETR``-family detector (before it in the bases),
    it overrides only ``_init_layers``: ``model.encoder`` is built from the
    registry, by default as :class:`ProScaleDetrTransformerEncoder`, which
    keeps mmdet's encoder interface (inputs and memory fine to coarse), so
    ``pre_transformer``, ``forward_encoder``, ``pre_decoder`` and the
    decoder are the detector's own. ``model.encoder`` takes mmdet's keys
    (``layer_cfg``, ``num_layers``: None or the total depth) plus
    ``num_layers_per_stage``, ``trc`` and ``residual``.
    """

    def _init_layers(self) -> None:
        """Initialize the detector's layers with the PRO-SCALE encoder."""
        encoder_cfg = ConfigDict(self.encoder)
        encoder_cfg.setdefault('type', DEFAULT_ENCODER)
        # The parent builds a one-layer mmdet encoder (it also sets
        # ``embed_dims`` from it) that is replaced right below.
        self.encoder = dict(layer_cfg=encoder_cfg.layer_cfg, num_layers=1)
        super()._init_layers()
        self.encoder = MODELS.build(encoder_cfg)


@MODELS.register_module()
class ProScaleDINO(ProScaleEncoderMixin, DINO):
    """DINO with the PRO-SCALE encoder (see :class:`ProScaleEncoderMixin`).

    Takes mmdet's ``DINO`` arguments; ``encoder`` additionally takes
    ``num_layers_per_stage`` (one entry per scale, coarse to fine), ``trc``
    and ``residual``.
    """


@MODELS.register_module()
class ProScaleDeformableDETR(ProScaleEncoderMixin, DeformableDETR):
    """Deformable DETR with the PRO-SCALE encoder (see
    :class:`ProScaleEncoderMixin`).

    Takes mmdet's ``DeformableDETR`` arguments; ``encoder`` additionally
    takes ``num_layers_per_stage`` (one entry per scale, coarse to fine),
    ``trc`` and ``residual``.
    """
