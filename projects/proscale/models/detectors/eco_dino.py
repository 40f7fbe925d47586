# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-DINO: DINO with an early-exit encoder."""
from typing import (Any, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple)

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import OptConfigType
from torch import Tensor

from .early_exit import EarlyExitMixin, ExitLosses
from .gated_inference import GatedInferenceMixin
from .proscale_detr import ProScaleDINO


@MODELS.register_module()
class EcoDINO(GatedInferenceMixin, EarlyExitMixin, ProScaleDINO):
    """DINO whose encoder can exit early (ECO-M2F's recipe for detection).

    The encoder is :class:`ProScaleDetrTransformerEncoder` (see
    :class:`ProScaleDINO`): ``num_layers_per_stage=(0, 0, 0, N)`` with
    ``trc=None`` is mmdet's N-layer encoder (ECO-M2F), any other split the
    PRO-SCALE encoder (Lite-ECO-M2F). Exit ``k`` runs the first ``k``
    encoder layers; the decoder, the two-stage query selection and the head
    are shared by every exit and always see the memory of all scales.

    The training and inference interface is :class:`EarlyExitMixin`'s, the
    same as ``EcoMask2Former``'s: ``ExitSamplingHook`` trains it with
    weighted stochastic depth, ``test_cfg.exit_layer`` (int) fixes the exit
    of ``predict`` and of the tensor forward, and :meth:`predict_exits`
    decodes several exits of one backbone and encoder pass (the multi-exit
    loops, ``tools/eco/eval_exits.py``).

    Gated inference (ECO-M2F step C, :class:`GatedInferenceMixin`): with
    ``gate`` set and ``test_cfg.exit_layer='gate'`` an ``ExitGate`` picks
    each image's exit from its pooled coarsest encoder input, the neck's
    1/64 output (1x1 conv + GroupNorm of mmdet's ``ChannelMapper``, before
    position and level embeddings: the projection DINO's encoder reads, the
    analogue of Mask2Former's projected 1/32 scale), averaged over the
    cells the encoder does not mask as padding. ``input_levels`` = L reads
    the L coarsest scales (up to 4: 1/64, 1/32, 1/16, 1/8). A gate on the
    tokens after encoder layers (``input_depth`` > 0) is not supported
    here.

    Args:
        exit_layers (Sequence[int], optional): Valid exits, each in
            ``[0, N]``. None (default) takes those of the last non-empty
            stage from layer 2 on: ECO-M2F's ``(2, ..., N)`` for
            ``(0, 0, 0, N)``, ``(5, 6)`` for ``(1, 1, 2, 2)``; ``(N, )`` if
            that leaves none.
        gate (:obj:`ConfigDict` or dict, optional): The ``ExitGate`` config
            for gated inference, ``in_channels`` = ``input_levels`` x
            ``embed_dims``. Defaults to None.
        *args, **kwargs: The arguments of :class:`ProScaleDINO` (mmdet's
            ``DINO``); ``test_cfg`` also takes ``exit_layer`` (an exit, or
            ``'gate'``).
    """

    # per-image quality of the derived exit dataset and of the oracle
    exit_quality_task = 'bbox'
    # DINOHead.forward stacks the decoder layers first: (L, B, Q, C)
    gated_output_batch_dim = 1
    gate_input_info = (
        'model.gate_input: averages of the neck outputs (ChannelMapper: 1x1 '
        'conv + GroupNorm, and the extra 3x3 stride-2 conv + GroupNorm for '
        '1/64), before position and level embeddings, over the cells the '
        "encoder's padding mask leaves valid, concatenated coarse to fine "
        '(gate_input_levels scales: 1/64, 1/32, 1/16, 1/8; the first '
        'embed_dims columns are the 1/64 scale)')

    def __init__(self,
                 *args,
                 exit_layers: Optional[Sequence[int]] = None,
                 gate: OptConfigType = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.encoder, 'forward_exits'):
            raise TypeError(
                f'{type(self).__name__}: the encoder '
                f"'{type(self.encoder).__name__}' has no early exit "
                '(forward_exits missing); use '
                "'ProScaleDetrTransformerEncoder'")
        exits = self.encoder.check_exits(
            self._default_exit_layers() if exit_layers is None else
            exit_layers)
        if not exits:
            raise ValueError('exit_layers must not be empty.')
        self._exit_layers: Tuple[int, ...] = exits
        self._encoder_exit: Optional[int] = None
        self.build_gate(gate)
        if self.gate is not None and self.gate.input_depth != 0:
            raise ValueError(
                f'{type(self).__name__}: gate.input_depth='
                f'{self.gate.input_depth}; only gates on the projected '
                'encoder inputs (input_depth=0) are supported')
        self.init_early_exit()

    def _default_exit_layers(self) -> Tuple[int, ...]:
        """The exits of the last non-empty stage from layer 2 on."""
        depth = self.encoder.num_layers
        first = depth - self.encoder.num_layers_per_stage[-1] + 1
        return tuple(range(max(first, 2), depth + 1)) or (depth, )

    @property
    def exit_layers(self) -> Tuple[int, ...]:
        """tuple[int]: The valid exits (numbers of encoder layers run)."""
        return self._exit_layers

    @property
    def num_encoder_layers(self) -> int:
        """int: Depth of the encoder."""
        return self.encoder.num_layers

    @property
    def encoder_exit(self) -> Optional[int]:
        """int | None: The exit plain forwards run; None runs all layers."""
        return self._encoder_exit

    @encoder_exit.setter
    def encoder_exit(self, exit_layer: Optional[int]) -> None:
        self._encoder_exit = exit_layer

    def forward_encoder(self, feat: Tensor, feat_mask: Tensor,
                        feat_pos: Tensor, spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        valid_ratios: Tensor) -> Dict:
        """Run the encoder up to :attr:`current_exit`.

        Modified from mmdet 3.3
        ``mmdet/models/detectors/deformable_detr.py``
        (``DeformableDETR.forward_encoder``): the encoder gets
        ``exit_layer``.

        Args:
            feat (Tensor): Tokens of all scales, fine to coarse, shape
                (bs, num_feat_points, dim).
            feat_mask (Tensor, optional): Padding mask, shape
                (bs, num_feat_points).
            feat_pos (Tensor): Position (+ level) embeddings, shape
                (bs, num_feat_points, dim).
            spatial_shapes (Tensor): (h, w) of each scale, shape
                (num_levels, 2).
            level_start_index (Tensor): Start index of each scale, shape
                (num_levels, ).
            valid_ratios (Tensor): Valid ratios, shape (bs, num_levels, 2).

        Returns:
            dict: ``memory`` (bs, num_feat_points, dim), ``memory_mask`` and
            ``spatial_shapes``, as mmdet's.
        """
        memory = self.encoder(
            query=feat,
            query_pos=feat_pos,
            key_padding_mask=feat_mask,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            exit_layer=self.current_exit)
        return dict(
            memory=memory,
            memory_mask=feat_mask,
            spatial_shapes=spatial_shapes)

    def forward_transformer_exits(
            self, img_feats: Tuple[Tensor], batch_data_samples: SampleList,
            exits: Iterable[int]) -> Iterator[Tuple[int, Dict]]:
        """Run the encoder once and the decoder at every exit.

        Modified from mmdet 3.3 ``mmdet/models/detectors/dino.py``
        (``DINO.forward_transformer``): ``pre_transformer`` once, the
        encoder's ``forward_exits``, then ``pre_decoder`` (two-stage query
        selection, denoising queries in training) and the decoder on each
        exit's memory.

        Args:
            img_feats (tuple[Tensor]): Neck features, each of shape
                (bs, dim, H_i, W_i).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples.
            exits (Iterable[int]): Exits, increasing.

        Yields:
            tuple[int, dict]: ``(k, head_inputs)``: exit ``k`` and the
            inputs of ``bbox_head`` (``hidden_states``, ``references``, ...)
            as ``forward_transformer`` returns them.
        """
        encoder_inputs, decoder_inputs = self.pre_transformer(
            img_feats, batch_data_samples)
        for exit_layer, memory in self.encoder.forward_exits(
                query=encoder_inputs['feat'],
                query_pos=encoder_inputs['feat_pos'],
                key_padding_mask=encoder_inputs['feat_mask'],
                spatial_shapes=encoder_inputs['spatial_shapes'],
                level_start_index=encoder_inputs['level_start_index'],
                valid_ratios=encoder_inputs['valid_ratios'],
                exits=exits):
            exit_decoder_inputs, head_inputs = self.pre_decoder(
                memory=memory,
                memory_mask=encoder_inputs['feat_mask'],
                spatial_shapes=encoder_inputs['spatial_shapes'],
                batch_data_samples=batch_data_samples)
            head_inputs.update(
                self.forward_decoder(**decoder_inputs, **exit_decoder_inputs))
            yield exit_layer, head_inputs

    def loss_exits_by_feat(self, feats: Tuple[Tensor],
                           batch_data_samples: SampleList,
                           exits: Optional[List[int]]) -> ExitLosses:
        """Compute DINO's losses at one or several exits.

        Args:
            feats (tuple[Tensor]): Neck features from :meth:`extract_feat`,
                each of shape (bs, dim, H_i, W_i).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples with ``gt_instances``.
            exits (list[int], optional): Exits to decode from one encoder
                pass, increasing; None decodes :attr:`current_exit`.

        Yields:
            tuple[int, dict[str, Tensor]]: ``(k, losses)`` of each exit,
            unweighted.
        """
        if exits is None:
            head_inputs = self.forward_transformer(feats, batch_data_samples)
            yield self.current_exit, self.bbox_head.loss(
                **head_inputs, batch_data_samples=batch_data_samples)
            return
        for exit_layer, head_inputs in self.forward_transformer_exits(
                feats, batch_data_samples, exits):
            yield exit_layer, self.bbox_head.loss(
                **head_inputs, batch_data_samples=batch_data_samples)

    def predict_exits_by_feat(self,
                              feats: Tuple[Tensor],
                              batch_data_samples: SampleList,
                              exits: Optional[Iterable[int]] = None,
                              rescale: bool = True) -> Dict[int, SampleList]:
        """Like :meth:`predict_exits`, from given neck features.

        Args:
            feats (tuple[Tensor]): Neck features from :meth:`extract_feat`,
                each of shape (bs, dim, H_i, W_i).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples.
            exits (Iterable[int], optional): Exits to decode; defaults to
                :attr:`exit_layers`.
            rescale (bool): Whether to rescale the results. Defaults to
                True.

        Returns:
            dict[int, list[:obj:`DetDataSample`]]: For each exit, the data
            samples with ``pred_instances`` at that exit (copies of
            ``batch_data_samples`` when there are several exits).
        """
        exits = self.check_exits(self.exit_layers if exits is None else exits)
        results = {}
        for exit_layer, head_inputs in self.forward_transformer_exits(
                feats, batch_data_samples, exits):
            data_samples = batch_data_samples if len(exits) == 1 else [
                data_sample.clone() for data_sample in batch_data_samples
            ]
            results_list = self.bbox_head.predict(
                **head_inputs,
                rescale=rescale,
                batch_data_samples=data_samples)
            results[exit_layer] = self.add_pred_to_datasample(
                data_samples, results_list)
        return results

    @property
    def gate_input_levels(self) -> int:
        """int: The encoder's scales (1/64, 1/32, 1/16, 1/8)."""
        return self.num_feature_levels

    def gate_input(self,
                   feats: Sequence[Tensor],
                   data_samples: Optional[SampleList] = None,
                   projected: Optional[List[Tensor]] = None,
                   num_levels: int = 1,
                   encoded: Optional[Tensor] = None) -> Tensor:
        """The gate input of every image: its coarsest neck output (1/64;
        with ``num_levels`` > 1 also finer ones), averaged over its cells
        that the encoder does not mask as padding.

        The valid cells are those of mmdet's encoder padding mask
        (``DeformableDETR.pre_transformer``: the image's ``img_shape``
        within its ``batch_input_shape``, resized to each scale by nearest
        interpolation: the first ``ceil(h / s)`` rows and ``ceil(w / s)``
        columns when the padded size is a multiple of the scale's stride
        ``s``, as for ``EcoMask2Former``); with no image padded, every cell.

        Args:
            feats (Sequence[Tensor]): Neck features, fine to coarse, each of
                shape (B, C, H_i, W_i); the neck's projections are the
                encoder's inputs.
            data_samples (list[:obj:`DetDataSample`], optional): The images'
                data samples. None averages the whole (padded) maps.
            projected (list[Tensor], optional): Unused: the neck features
                are the projected inputs.
            num_levels (int): Scales pooled, coarse to fine, 1 to
                ``len(feats)``. Defaults to 1.
            encoded (Tensor, optional): Not supported (must be None).

        Returns:
            Tensor: Pooled features, shape (B, num_levels * C).
        """
        if encoded is not None:
            raise ValueError(f'{type(self).__name__}: no gate input after '
                             'encoder layers (encoded must be None)')
        if not 1 <= num_levels <= len(feats):
            raise ValueError(f'num_levels={num_levels!r}: expected 1 to '
                             f'{len(feats)}')
        image_mask = None
        if data_samples is not None:
            height, width = data_samples[0].batch_input_shape
            image_mask = feats[0].new_ones((len(feats[0]), height, width))
            for mask, sample in zip(image_mask, data_samples):
                mask[:sample.img_shape[0], :sample.img_shape[1]] = 0
        pooled = []
        for feat in list(feats)[::-1][:num_levels]:
            if image_mask is None:
                pooled.append(feat.mean(dim=(2, 3)))
                continue
            valid = ~F.interpolate(
                image_mask[None], size=feat.shape[-2:]).to(torch.bool)[0]
            valid = valid.unsqueeze(1).to(feat.dtype)
            pooled.append((feat * valid).sum(dim=(2, 3)) /
                          valid.sum(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    def gate_inputs_and_reuse(
        self,
        feats: Sequence[Tensor],
        data_samples: Optional[SampleList] = None,
        num_levels: int = 1,
        depths: Sequence[int] = (0, ),
        exits: Optional[Sequence[int]] = None
    ) -> Tuple[Dict[int, Tensor], Dict[str, Any]]:
        """Gate inputs on the projected inputs (depth 0 only); nothing for
        the exits to reuse (see
        :meth:`GatedInferenceMixin.gate_inputs_and_reuse`)."""
        if set(depths) != {0}:
            raise ValueError(f'{type(self).__name__}: gate inputs after '
                             f'encoder layers {sorted(set(depths))} asked '
                             'for; only depth 0 is supported')
        return {0: self.gate_input(feats, data_samples, None, num_levels)}, {}

    def forward_exit_by_feat(self, feats: Sequence[Tensor],
                             data_samples: Optional[SampleList],
                             exit_layer: int,
                             **reuse: Any) -> Tuple[Tensor, Tensor]:
        """The head's tensor outputs at one exit, as mmdet's
        ``DetectionTransformer._forward``: classification scores
        (num_decoder_layers, B, num_queries, num_classes) and boxes
        (num_decoder_layers, B, num_queries, 4)."""
        _, head_inputs = next(
            self.forward_transformer_exits(
                tuple(feats), data_samples, [exit_layer]))
        return self.bbox_head.forward(**head_inputs)
