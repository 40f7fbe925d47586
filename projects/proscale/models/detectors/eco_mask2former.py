# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F: Mask2Former with an early-exit encoder."""
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from mmdet.models.detectors import Mask2Former
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from ..dense_heads import EcoMask2FormerHead, PixelDecoderOutput
from .early_exit import EarlyExitMixin, ExitLosses
from .gated_inference import GatedInferenceMixin, valid_shapes

_EARLY_EXIT_API = ('exit_layer', 'exit_layers', 'num_layers', 'forward_exits')


@MODELS.register_module()
class EcoMask2Former(GatedInferenceMixin, EarlyExitMixin, Mask2Former):
    """Mask2Former whose encoder (the pixel decoder) can exit early.

    Implements the parent model of `ECO-M2F
    <https://arxiv.org/abs/2404.15244>`_: one backbone, one early-exit
    encoder and one transformer decoder shared by every exit. The pixel
    decoder must implement the early-exit interface (``exit_layer``,
    ``exit_layers``, ``num_layers``, ``forward_exits``), e.g.
    ``EarlyExitMSDeformAttnPixelDecoder`` (ECO-M2F) or
    ``ProScalePixelDecoder`` (Lite-ECO-M2F), and the head must be
    :class:`EcoMask2FormerHead`. Parameters and state-dict keys equal those
    of :class:`Mask2Former` with the same head and decoder settings.

    Training (driven by ``ExitSamplingHook``, weighted stochastic depth):

    - one exit per iteration: the hook calls :meth:`set_exit` and sets
      :attr:`loss_weight` to the exit's weight alpha_k; every loss term is
      multiplied by it;
    - several exits per iteration: the hook sets :attr:`exit_loss_weights`
      to ``{k: alpha_k}``; :meth:`loss` runs the backbone and the encoder
      once (``forward_exits``), decodes at every listed exit and returns
      ``sum_k alpha_k * L_k`` term by term (the log keys stay those of
      Mask2Former). Unlike a single scaled loss, these relative weights
      survive full-model gradient norm clipping.

    After every :meth:`loss` call :attr:`exit_losses` maps each exit that
    ran to its unweighted total loss (detached), for logging.

    Inference: ``test_cfg.exit_layer`` (int) fixes the exit of
    :meth:`predict` and of the tensor forward (``mode='tensor'``);
    ``None`` keeps the exit set by :meth:`set_exit` (all layers by
    default). :meth:`predict_exits` decodes several exits of one
    backbone and encoder pass.

    Gated inference (ECO-M2F step C, :class:`GatedInferenceMixin`): with
    ``gate`` set and ``test_cfg.exit_layer='gate'`` an ``ExitGate`` picks
    each image's exit; the chosen exit is stored in each data sample's
    metainfo as ``exit_layer``.

    Args:
        backbone (:obj:`ConfigDict` or dict): The backbone config.
        neck (:obj:`ConfigDict` or dict, optional): The neck config.
        panoptic_head (:obj:`ConfigDict` or dict): The
            :class:`EcoMask2FormerHead` config.
        panoptic_fusion_head (:obj:`ConfigDict` or dict): The panoptic
            fusion head config.
        train_cfg (:obj:`ConfigDict` or dict, optional): Training config.
        test_cfg (:obj:`ConfigDict` or dict, optional): Testing config;
            besides Mask2Former's keys it takes ``exit_layer``.
        data_preprocessor (:obj:`ConfigDict` or dict, optional): The data
            preprocessor config.
        gate (:obj:`ConfigDict` or dict, optional): The ``ExitGate`` config
            for gated inference. Defaults to None.
        init_cfg (:obj:`ConfigDict` or dict or list, optional): The weight
            initialization config.
    """

    # per-image quality of the derived exit dataset and of the oracle
    exit_quality_task = 'panoptic'
    gate_input_depths = (0, 1)
    gate_input_info = (
        'model.gate_input: averages of the projected encoder scales '
        '(input_convs, 1x1 conv + GroupNorm), before position and level '
        "embeddings, over the cells covering the image's img_shape, "
        'concatenated coarse to fine (gate_input_levels scales; the first '
        "feat_channels columns are the 1/32 scale, the authors' gate input)"
        '; layer1_gate_inputs: the same averages of the tokens after the '
        'first encoder layer (pixel_decoder.encode_layers(feats, 1), '
        'ExitGate(input_depth=1)); the exits resume from those tokens')

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 panoptic_head: OptConfigType = None,
                 panoptic_fusion_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 gate: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            panoptic_head=panoptic_head,
            panoptic_fusion_head=panoptic_fusion_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if not isinstance(self.panoptic_head, EcoMask2FormerHead):
            raise TypeError(
                f'{type(self).__name__}: model.panoptic_head.type must be '
                "'EcoMask2FormerHead' (or a subclass), got "
                f"'{type(self.panoptic_head).__name__}'")
        pixel_decoder = self.panoptic_head.pixel_decoder
        missing = [
            name for name in _EARLY_EXIT_API
            if not hasattr(pixel_decoder, name)
        ]
        if missing:
            raise TypeError(
                f'{type(self).__name__}: the pixel decoder '
                f"'{type(pixel_decoder).__name__}' has no early exit "
                f'({", ".join(missing)} missing); use e.g. '
                "'EarlyExitMSDeformAttnPixelDecoder' or "
                "'ProScalePixelDecoder'")
        self.build_gate(gate)
        self.init_early_exit()

    @property
    def exit_layers(self) -> Tuple[int, ...]:
        """tuple[int]: The valid exits (numbers of encoder layers run)."""
        return tuple(self.panoptic_head.pixel_decoder.exit_layers)

    @property
    def num_encoder_layers(self) -> int:
        """int: Depth of the encoder (the pixel decoder's)."""
        return self.panoptic_head.pixel_decoder.num_layers

    @property
    def encoder_exit(self) -> Optional[int]:
        """int | None: The pixel decoder's exit; None runs all layers."""
        return self.panoptic_head.pixel_decoder.exit_layer

    @encoder_exit.setter
    def encoder_exit(self, exit_layer: Optional[int]) -> None:
        self.panoptic_head.pixel_decoder.exit_layer = exit_layer

    def loss_exits_by_feat(self, feats: Tuple[Tensor],
                           batch_data_samples: SampleList,
                           exits: Optional[List[int]]) -> ExitLosses:
        """Compute Mask2Former's losses at one or several exits.

        Args:
            feats (tuple[Tensor]): Multi-scale features from
                :meth:`extract_feat`, each of shape (B, C_i, H_i, W_i).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples with ``gt_instances`` and ``gt_sem_seg``.
            exits (list[int], optional): Exits to decode from one encoder
                pass (``forward_exits``), increasing; None decodes the
                current exit.

        Yields:
            tuple[int, dict[str, Tensor]]: ``(k, losses)`` of each exit,
            unweighted.
        """
        if exits is None:
            yield self.current_exit, self.panoptic_head.loss(
                feats, batch_data_samples)
            return
        for exit_layer, mask_feature, multi_scale_features in (
                self.panoptic_head.pixel_decoder.forward_exits(feats, exits)):
            yield exit_layer, self.panoptic_head.loss(
                PixelDecoderOutput(mask_feature, multi_scale_features),
                batch_data_samples)

    @property
    def gate_input_levels(self) -> int:
        """int: The pixel decoder's encoder scales (1/32, 1/16, 1/8)."""
        return self.panoptic_head.pixel_decoder.num_encoder_levels

    def gate_input(self,
                   feats: Sequence[Tensor],
                   data_samples: Optional[SampleList] = None,
                   projected: Optional[List[Tensor]] = None,
                   num_levels: int = 1,
                   encoded: Optional[Tensor] = None) -> Tensor:
        """The gate input of every image: its projected 1/32 features (and
        with ``num_levels`` > 1 those of finer scales), or its tokens after
        the first encoder layers, averaged over its own area.

        Args:
            feats (Sequence[Tensor]): Backbone features, each of shape
                (B, C_i, H_i, W_i).
            data_samples (list[:obj:`DetDataSample`], optional): The images'
                data samples; their ``img_shape`` limits the average to the
                cells covering the image. None averages the whole (padded)
                map.
            projected (list[Tensor], optional): The pixel decoder's
                ``project_inputs(feats)``, reused when given.
            num_levels (int): Encoder scales pooled, coarse to fine.
                Defaults to 1.
            encoded (Tensor, optional): The pixel decoder's
                ``encode_layers(feats, d)``, shape (B, N, C), pooled instead
                of the projected features.

        Returns:
            Tensor: Pooled features, shape (B, num_levels * C).
        """
        shapes = None if data_samples is None else valid_shapes(data_samples)
        return self.panoptic_head.pixel_decoder.gate_features(
            list(feats), shapes, projected, num_levels, encoded)

    def gate_inputs_and_reuse(
        self,
        feats: Sequence[Tensor],
        data_samples: Optional[SampleList] = None,
        num_levels: int = 1,
        depths: Sequence[int] = (0, ),
        exits: Optional[Sequence[int]] = None
    ) -> Tuple[Dict[int, Tensor], Dict[str, Any]]:
        """Gate inputs after several encoder depths and the state the exits
        reuse (see :meth:`GatedInferenceMixin.gate_inputs_and_reuse`): the
        pixel decoder's ``project_inputs`` runs once, the encoder layers
        once up to the deepest depth (``encode_layers``, one call per
        depth); ``projected`` and, when every exit is at least as deep,
        ``resume=(d, tokens)`` of the deepest depth d > 0 are reused."""
        pixel_decoder = self.panoptic_head.pixel_decoder
        projected = pixel_decoder.project_inputs(list(feats))
        inputs: Dict[int, Tensor] = {}
        reuse: Dict[str, Any] = dict(projected=projected)
        for depth in sorted(set(depths)):
            encoded = pixel_decoder.encode_layers(list(feats), depth,
                                                  projected) if depth else None
            inputs[depth] = self.gate_input(feats, data_samples, projected,
                                            num_levels, encoded)
            if depth and exits is not None and min(exits) >= depth:
                reuse['resume'] = (depth, encoded)
        return inputs, reuse

    def forward_exit_by_feat(self,
                             feats: Sequence[Tensor],
                             data_samples: Optional[SampleList],
                             exit_layer: int,
                             projected: Optional[List[Tensor]] = None,
                             resume: Optional[Tuple[int, Tensor]] = None
                             ) -> Tuple[List[Tensor]]:
        """The head's tensor outputs at one exit (classification and mask
        logits of every decoder layer, batch first), reusing the projected
        inputs and the encoder tokens of ``resume``."""
        _, mask_feature, multi_scale_features = next(
            self.panoptic_head.pixel_decoder.forward_exits(
                list(feats), [exit_layer], projected, resume))
        return self.panoptic_head.forward(
            PixelDecoderOutput(mask_feature, multi_scale_features),
            data_samples)

    def predict_exits_by_feat(
            self,
            feats: Tuple[Tensor],
            batch_data_samples: SampleList,
            exits: Optional[Iterable[int]] = None,
            rescale: bool = True,
            projected: Optional[List[Tensor]] = None,
            resume: Optional[Tuple[int, Tensor]] = None
    ) -> Dict[int, SampleList]:
        """Like :meth:`predict_exits`, from given backbone (and neck)
        features, so callers can reuse them (e.g. for the gate's input).

        Args:
            feats (tuple[Tensor]): Multi-scale features from
                :meth:`extract_feat`, each of shape (B, C_i, H_i, W_i).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples.
            exits (Iterable[int], optional): Exits to decode; defaults to
                :attr:`exit_layers`.
            rescale (bool): Whether to rescale the results. Defaults to
                True.
            projected (list[Tensor], optional): The pixel decoder's
                ``project_inputs(feats)`` when the caller has them (e.g.
                from the gate input); None computes them.
            resume (tuple[int, Tensor], optional): ``(d, tokens)``, the
                tokens after the first ``d`` encoder layers
                (``pixel_decoder.encode_layers``), not run again; every exit
                must be ``>= d``.

        Returns:
            dict[int, list[:obj:`DetDataSample`]]: See
            :meth:`predict_exits`.
        """
        exits = self.check_exits(self.exit_layers if exits is None else exits)
        results = {}
        for exit_layer, mask_feature, multi_scale_features in (
                self.panoptic_head.pixel_decoder.forward_exits(
                    feats, exits, projected, resume)):
            data_samples = batch_data_samples if len(exits) == 1 else [
                data_sample.clone() for data_sample in batch_data_samples
            ]
            mask_cls_results, mask_pred_results = self.panoptic_head.predict(
                PixelDecoderOutput(mask_feature, multi_scale_features),
                data_samples)
            results_list = self.panoptic_fusion_head.predict(
                mask_cls_results,
                mask_pred_results,
                data_samples,
                rescale=rescale)
            results[exit_layer] = self.add_pred_to_datasample(
                data_samples, results_list)
        return results
