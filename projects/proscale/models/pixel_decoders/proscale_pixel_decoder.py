# Copyright (c) The proscale Authors. All rights reserved.
import copy
from typing import (Dict, Iterable, Iterator, List, Optional, Sequence, Tuple,
                    Union)

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import MultiScaleDeformableAttention
from mmdet.models.layers import MSDeformAttnPixelDecoder
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.config import ConfigDict
from mmengine.model import (ModuleList, caffe2_xavier_init, normal_init,
                            xavier_init)
from torch import Tensor

from ..layers import (LightPixelEmbedding, ProScaleTransformerEncoder,
                      build_token_recalibration)

PIXEL_EMBEDS = ('maxpool', 'conv')


@MODELS.register_module()
class ProScalePixelDecoder(MSDeformAttnPixelDecoder):
    """PRO-SCALE pixel decoder: progressive token length scaling.

    A drop-in replacement of :class:`MSDeformAttnPixelDecoder` for
    ``Mask2FormerHead(pixel_decoder=...)`` whose encoder adds the scales
    progressively (see :class:`ProScaleTransformerEncoder`), coarse to fine:

    =====  ==========================  ======  ====================
    Stage  Tokens entering             Levels  Layers
    =====  ==========================  ======  ====================
    1      TRC(1/32)                   1       p1
    2      stage-1 output + TRC(1/16)  2       p2
    3      stage-2 output + 1/8        3       p3
    =====  ==========================  ======  ====================

    with ``(p1, p2, p3) = num_layers_per_stage``. ``(0, 0, 6)`` with
    ``pixel_embed='conv'`` and ``trc=None`` is mmdet's
    ``MSDeformAttnPixelDecoder`` (same parameters and state_dict keys).

    - TRC (token re-calibration, :class:`TokenRecalibration`): one module,
      shared by both coarse scales, gates the 1/32 tokens (before stage 1)
      and the 1/16 tokens (before stage 2) with a map predicted from the
      projected 1/8 tokens (before position and level embedding).
    - LPE (light pixel embedding, :class:`LightPixelEmbedding`): the 3x3
      conv of the FPN step to 1/4 is replaced by a 3x3 max-pool + norm +
      activation.

    Depth: ``num_layers_per_stage`` defines the encoder depth.
    ``encoder.num_layers`` (inherited from Mask2Former ``_base_`` configs)
    must be None or equal to ``sum(num_layers_per_stage)``; any other value
    raises ValueError. ``encoder.layer_cfg.self_attn_cfg.num_levels`` stays
    the full number of encoder scales (3, as ``Mask2FormerHead`` asserts);
    stage ``s`` layers are built with ``s`` levels internally.

    Early exit (shared by PRO-SCALE and, through
    :class:`EarlyExitMSDeformAttnPixelDecoder`, the Mask2Former baseline):
    setting :attr:`exit_layer` to ``k`` makes :meth:`forward` stop after
    ``k`` encoder layers (the others are not run); :meth:`forward_exits`
    runs the encoder once and yields the outputs at several exits. The valid
    exits are :attr:`exit_layers`; by default the layers of the last
    non-empty stage, e.g. (7, 8, 9) for (3, 3, 3), so that every exit
    delivers all three scales encoded. Exits before the last stage may be
    requested explicitly through ``exit_layers``: they append the not yet
    encoded scales as their projected (and TRC-gated) input tokens.

    Args:
        in_channels (list[int] | tuple[int]): Channels of the input feature
            maps (res2..res5).
        strides (list[int] | tuple[int]): Strides of the input feature maps.
        feat_channels (int): Channels of the encoder tokens.
        out_channels (int): Channels of the mask feature.
        num_outs (int): Number of multi-scale output features.
        norm_cfg (:obj:`ConfigDict` or dict): Config of the norm layers.
            Defaults to dict(type='GN', num_groups=32).
        act_cfg (:obj:`ConfigDict` or dict): Config of the activations.
            Defaults to dict(type='ReLU').
        encoder (:obj:`ConfigDict` or dict): Config of the encoder with
            ``layer_cfg`` (``DeformableDetrTransformerEncoderLayer``),
            optionally ``num_layers`` (None or the total depth) and
            ``num_cp``.
        positional_encoding (:obj:`ConfigDict` or dict): Config of the
            ``SinePositionalEncoding``. Defaults to
            dict(num_feats=128, normalize=True).
        num_layers_per_stage (Sequence[int]): Non-negative number of layers
            of each stage; one stage per encoder scale. Defaults to
            (3, 3, 3).
        trc (dict, optional): Token re-calibration: ``type`` (``'linear'``
            or ``'conv'``), ``temperature`` (> 0) and ``layout``
            (``'legacy'``: the authors' token reshape, needed for their
            checkpoints; ``'spatial'``: spatially co-located resize). None
            disables TRC. Defaults to
            dict(type='linear', temperature=0.1, layout='legacy').
        pixel_embed (str): ``'maxpool'`` (LPE) or ``'conv'`` (Mask2Former)
            for the FPN step to 1/4. Defaults to ``'maxpool'``.
        residual (bool): Add the gated stage inputs after every layer of
            stages 1 and 2. Defaults to False.
        exit_layers (Sequence[int], optional): Valid early exits, each in
            ``[0, num_layers]``. None uses :meth:`default_exit_layers`.
        init_cfg (:obj:`ConfigDict` or dict or list, optional):
            Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 in_channels: Union[List[int],
                                    Tuple[int]] = [256, 512, 1024, 2048],
                 strides: Union[List[int], Tuple[int]] = [4, 8, 16, 32],
                 feat_channels: int = 256,
                 out_channels: int = 256,
                 num_outs: int = 3,
                 norm_cfg: ConfigType = dict(type='GN', num_groups=32),
                 act_cfg: ConfigType = dict(type='ReLU'),
                 encoder: ConfigType = None,
                 positional_encoding: ConfigType = dict(
                     num_feats=128, normalize=True),
                 num_layers_per_stage: Sequence[int] = (3, 3, 3),
                 trc: Optional[dict] = dict(
                     type='linear', temperature=0.1, layout='legacy'),
                 pixel_embed: str = 'maxpool',
                 residual: bool = False,
                 exit_layers: Optional[Sequence[int]] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if encoder is None:
            raise ValueError(f'{type(self).__name__} needs an `encoder` '
                             'config with `layer_cfg`.')
        encoder = ConfigDict(copy.deepcopy(encoder))
        num_levels = encoder.layer_cfg.self_attn_cfg.num_levels
        stages = self._check_stages(num_layers_per_stage, num_levels)
        if encoder.get('num_layers') not in (None, sum(stages)):
            raise ValueError(
                f'encoder.num_layers={encoder.num_layers} contradicts '
                f'num_layers_per_stage={stages} ({sum(stages)} layers); set '
                'encoder.num_layers=None: num_layers_per_stage defines the '
                'depth.')
        if pixel_embed not in PIXEL_EMBEDS:
            raise ValueError(f'Unknown pixel_embed {pixel_embed!r}; expected '
                             f'one of {PIXEL_EMBEDS}.')
        if not isinstance(residual, bool):
            raise ValueError(f'residual must be a bool, got {residual!r}.')

        # The parent builds a one-layer Mask2FormerTransformerEncoder that is
        # replaced by the progressive encoder right below.
        super().__init__(
            in_channels=in_channels,
            strides=strides,
            feat_channels=feat_channels,
            out_channels=out_channels,
            num_outs=num_outs,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            encoder=ConfigDict(layer_cfg=encoder.layer_cfg, num_layers=1),
            positional_encoding=positional_encoding,
            init_cfg=init_cfg)
        self.encoder = ProScaleTransformerEncoder(
            num_layers_per_stage=stages,
            layer_cfg=encoder.layer_cfg,
            residual=residual,
            num_cp=encoder.get('num_cp', -1),
            init_cfg=encoder.get('init_cfg'))

        self.pixel_embed = pixel_embed
        if pixel_embed == 'maxpool':
            self.output_convs = ModuleList([
                LightPixelEmbedding(
                    feat_channels, norm_cfg=norm_cfg, act_cfg=act_cfg)
                for _ in self.output_convs
            ])

        self.trc = build_token_recalibration(
            trc, feat_channels) if num_levels > 1 else None

        self._exit_layers = self._check_exit_layers(
            self.default_exit_layers() if exit_layers is None else exit_layers)
        self._exit_layer: Optional[int] = None

    @staticmethod
    def _check_stages(num_layers_per_stage: Sequence[int],
                      num_levels: int) -> Tuple[int, ...]:
        """Validate ``num_layers_per_stage`` against the encoder levels."""
        is_sequence = isinstance(num_layers_per_stage, Sequence)
        if not is_sequence or isinstance(num_layers_per_stage, str):
            raise ValueError('num_layers_per_stage must be a sequence of '
                             f'ints, got {num_layers_per_stage!r}.')
        if len(num_layers_per_stage) != num_levels:
            raise ValueError(
                f'num_layers_per_stage={tuple(num_layers_per_stage)} has '
                f'{len(num_layers_per_stage)} stages, but the encoder has '
                f'{num_levels} levels (encoder.layer_cfg.self_attn_cfg.'
                'num_levels): one stage per level is needed.')
        for num in num_layers_per_stage:
            if isinstance(num, bool) or not isinstance(num, int) or num < 0:
                raise ValueError(
                    'num_layers_per_stage must hold non-negative ints, got '
                    f'{tuple(num_layers_per_stage)}.')
        return tuple(num_layers_per_stage)

    def _check_exit_layers(self,
                           exit_layers: Iterable[int]) -> Tuple[int, ...]:
        """Validate exits and return them sorted without duplicates."""
        exits = self.encoder.check_exits(exit_layers)
        if not exits:
            raise ValueError('exit_layers must not be empty.')
        return exits

    @property
    def num_layers_per_stage(self) -> Tuple[int, ...]:
        """tuple[int]: Number of encoder layers of each stage."""
        return self.encoder.num_layers_per_stage

    @property
    def num_layers(self) -> int:
        """int: Total number of encoder layers."""
        return self.encoder.num_layers

    def default_exit_layers(self) -> Tuple[int, ...]:
        """Default exits: after each layer of the last non-empty stage.

        Every such exit delivers all scales encoded, e.g. (7, 8, 9) for
        (3, 3, 3), (3, 4, 5, 6) for (1, 1, 4); ``(num_layers, )`` when the
        last stage is empty.

        Returns:
            tuple[int]: The default exits.
        """
        last = self.num_layers_per_stage[-1]
        return tuple(range(self.num_layers - last + 1,
                           self.num_layers + 1)) or (self.num_layers, )

    @property
    def exit_layers(self) -> Tuple[int, ...]:
        """tuple[int]: Valid early exits, increasing."""
        return self._exit_layers

    @property
    def exit_layer(self) -> Optional[int]:
        """int | None: Exit used by :meth:`forward`; None runs all layers."""
        return self._exit_layer

    @exit_layer.setter
    def exit_layer(self, k: Optional[int]) -> None:
        if k is not None and k not in self._exit_layers:
            raise ValueError(f'Exit layer {k!r} is not one of the valid '
                             f'exits {self._exit_layers}.')
        self._exit_layer = k

    def init_weights(self) -> None:
        """Initialize weights as mmdet's ``MSDeformAttnPixelDecoder``.

        The parent's version is not reused because it initializes the
        3x3 conv that LPE removes.
        """
        for input_conv in self.input_convs:
            xavier_init(
                input_conv.conv, gain=1, bias=0, distribution='uniform')
        for lateral_conv in self.lateral_convs:
            caffe2_xavier_init(lateral_conv.conv, bias=0)
        if self.pixel_embed == 'conv':
            for output_conv in self.output_convs:
                caffe2_xavier_init(output_conv.conv, bias=0)
        caffe2_xavier_init(self.mask_feature, bias=0)
        normal_init(self.level_encoding, mean=0, std=1)
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        for m in self.encoder.layers.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()

    def project_inputs(self, feats: List[Tensor]) -> List[Tensor]:
        """Project the encoder scales (1x1 conv + norm), coarse to fine.

        The encoder's input tokens before TRC, position and level
        embeddings; :meth:`forward_exits` accepts them back so that a
        caller that also needs them (the exit gate reads the 1/32 map)
        does not compute them twice.

        Args:
            feats (list[Tensor]): Backbone features, each (B, C_i, H_i, W_i).

        Returns:
            list[Tensor]: ``num_encoder_levels`` maps, each (B,
            feat_channels, h, w), the 1/32 scale first.
        """
        return [
            self.input_convs[i](feats[self.num_input_levels - i - 1])
            for i in range(self.num_encoder_levels)
        ]

    def gate_features(self,
                      feats: List[Tensor],
                      valid_shapes: Optional[Tensor] = None,
                      projected: Optional[List[Tensor]] = None,
                      num_levels: int = 1,
                      encoded: Optional[Tensor] = None) -> Tensor:
        """Pooled projected (or encoded) tokens, the input of an exit gate.

        Args:
            feats (list[Tensor]): Backbone features, each (B, C_i, H_i, W_i).
            valid_shapes (Tensor, optional): Each image's unpadded input
                size ``(h, w)`` in pixels, shape (B, 2); the average then
                runs over the cells of each map that overlap the image
                (``ceil(h / s) x ceil(w / s)`` at stride ``s``), so it does
                not depend on how far a batch pads the image. None averages
                the whole maps.
            projected (list[Tensor], optional): :meth:`project_inputs` of
                ``feats``, reused instead of projecting again.
            num_levels (int): How many encoder scales to pool, coarse to
                fine: 1 is the 1/32 scale alone (the authors' gate input),
                ``num_encoder_levels`` every scale. Defaults to 1.
            encoded (Tensor, optional): Tokens after the first encoder
                layers (:meth:`encode_layers`), shape (B, N, C), pooled
                instead of the projected ones.

        Returns:
            Tensor: The averages of the projected (1x1 conv + norm, no
            position or level embedding) or encoded scales, concatenated
            coarse to fine, shape (B, num_levels * feat_channels).
        """
        if not 1 <= num_levels <= self.num_encoder_levels:
            raise ValueError(f'num_levels={num_levels!r}: expected 1 to '
                             f'{self.num_encoder_levels}')
        pooled, start = [], 0
        for i in range(num_levels):
            level = self.num_input_levels - i - 1
            if encoded is not None:
                height, width = feats[level].shape[-2:]
                tokens = encoded[:, start:start + height * width].transpose(
                    1, 2).reshape(len(encoded), -1, height, width)
                start += height * width
            elif projected is not None:
                tokens = projected[i]
            else:
                tokens = self.input_convs[i](feats[level])
            pooled.append(
                self._pool_valid(tokens, valid_shapes, self.strides[level]))
        return torch.cat(pooled, dim=1)

    def encode_layers(self,
                      feats: List[Tensor],
                      num_layers: int,
                      projected: Optional[List[Tensor]] = None) -> Tensor:
        """The tokens after the first ``num_layers`` encoder layers.

        :meth:`forward_exits` resumes from them (``resume=(num_layers,
        tokens)``) without running those layers again.

        Args:
            feats (list[Tensor]): Backbone features, each (B, C_i, H_i, W_i).
            num_layers (int): Encoder layers to run, ``0 <= num_layers <=
                num_layers`` of the encoder.
            projected (list[Tensor], optional): :meth:`project_inputs` of
                ``feats``; None projects them here.

        Returns:
            Tensor: Tokens of all scales, coarse to fine, shape (B, N, C).
        """
        inputs = self._encoder_inputs(feats, projected)
        _, memory = next(
            self.encoder.forward_exits(exits=(num_layers, ), **inputs))
        return memory

    @staticmethod
    def _pool_valid(tokens: Tensor, valid_shapes: Optional[Tensor],
                    stride: int) -> Tensor:
        """Average a (B, C, h, w) map over each image's valid cells."""
        if valid_shapes is None:
            return tokens.mean(dim=(2, 3))
        height, width = tokens.shape[-2:]
        cells = torch.ceil(
            valid_shapes.to(tokens.device, torch.float64) / stride).long()
        rows = torch.arange(height, device=tokens.device)
        cols = torch.arange(width, device=tokens.device)
        mask = (rows[None, :, None] < cells[:, 0, None, None]) & (
            cols[None, None, :] < cells[:, 1, None, None])
        mask = mask.unsqueeze(1).to(tokens.dtype)
        return (tokens * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3))

    def _encoder_inputs(
            self,
            feats: List[Tensor],
            projected: Optional[List[Tensor]] = None) -> Dict[str, Tensor]:
        """Project, recalibrate and flatten the encoder scales.

        Args:
            feats (list[Tensor]): Backbone features, each (B, C_i, H_i, W_i).
            projected (list[Tensor], optional): :meth:`project_inputs` of
                ``feats``; None projects them here.

        Returns:
            dict[str, Tensor]: Keyword arguments of the encoder: ``query``
            (B, N, C) with the coarse scales TRC-gated, ``query_pos``
            (B, N, C), ``key_padding_mask`` (B, N), ``spatial_shapes``
            (L, 2), ``level_start_index`` (L, ), ``valid_ratios``
            (B, L, 2) and ``reference_points`` (B, N, L, 2), with ``N`` the
            number of tokens of the ``L`` scales, ordered coarse to fine.

        Modified from the first half of mmdet 3.3's
        ``MSDeformAttnPixelDecoder.forward``
        (mmdet/models/layers/msdeformattn_pixel_decoder.py): the projection
        is shared with the gate, and TRC gates the coarse scales.
        """
        batch_size = feats[0].shape[0]
        if projected is None:
            projected = self.project_inputs(feats)
        tokens, hws = [], []
        padding_masks, level_pos_embeds = [], []
        spatial_shapes, reference_points = [], []
        for i in range(self.num_encoder_levels):
            level_idx = self.num_input_levels - i - 1
            feat = feats[level_idx]
            feat_hw = torch._shape_as_tensor(feat)[2:].to(feat.device)
            padding_mask = feat.new_zeros(
                (batch_size, ) + feat.shape[-2:], dtype=torch.bool)
            pos_embed = self.postional_encoding(padding_mask)
            level_embed = self.level_encoding.weight[i]
            level_pos_embed = level_embed.view(1, -1, 1, 1) + pos_embed
            points = self.point_generator.single_level_grid_priors(
                feat.shape[-2:], level_idx, device=feat.device)
            feat_wh = feat_hw.unsqueeze(0).flip(dims=[0, 1])
            points = points / (feat_wh * self.strides[level_idx])

            tokens.append(projected[i].flatten(2).permute(0, 2, 1))
            hws.append(feat.shape[-2:])
            padding_masks.append(padding_mask.flatten(1))
            level_pos_embeds.append(
                level_pos_embed.flatten(2).permute(0, 2, 1))
            spatial_shapes.append(feat_hw)
            reference_points.append(points)

        if self.trc is not None:
            tokens = self.trc.forward_scales(tokens, hws)

        spatial_shapes = torch.cat(spatial_shapes).view(-1, 2)
        level_start_index = torch.cat((spatial_shapes.new_zeros(
            (1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))
        reference_points = torch.cat(reference_points, dim=0)
        reference_points = reference_points[None, :, None].repeat(
            batch_size, 1, self.num_encoder_levels, 1)
        return dict(
            query=torch.cat(tokens, dim=1),
            query_pos=torch.cat(level_pos_embeds, dim=1),
            key_padding_mask=torch.cat(padding_masks, dim=1),
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=reference_points.new_ones(
                (batch_size, self.num_encoder_levels, 2)),
            reference_points=reference_points)

    def _decode(self, feats: List[Tensor], memory: Tensor,
                spatial_shapes: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """FPN step from the encoded scales to the mask feature.

        Args:
            feats (list[Tensor]): Backbone features, each (B, C_i, H_i, W_i).
            memory (Tensor): Encoded tokens of all scales, (B, N, C).
            spatial_shapes (Tensor): (h, w) of each scale, shape (L, 2).

        Returns:
            tuple[Tensor, list[Tensor]]: ``mask_feature`` (B, C_out, H/4,
            W/4) and ``num_outs`` multi-scale features (B, C, h_i, w_i),
            coarse to fine.

        Modified from the second half of mmdet 3.3's
        ``MSDeformAttnPixelDecoder.forward``.
        """
        batch_size = memory.shape[0]
        num_queries_per_level = [e[0] * e[1] for e in spatial_shapes]
        outs = torch.split(
            memory.permute(0, 2, 1), num_queries_per_level, dim=-1)
        outs = [
            x.reshape(batch_size, -1, spatial_shapes[i][0],
                      spatial_shapes[i][1]) for i, x in enumerate(outs)
        ]
        for i in range(self.num_input_levels - self.num_encoder_levels - 1, -1,
                       -1):
            cur_feat = self.lateral_convs[i](feats[i])
            y = cur_feat + F.interpolate(
                outs[-1],
                size=cur_feat.shape[-2:],
                mode='bilinear',
                align_corners=False)
            outs.append(self.output_convs[i](y))
        return self.mask_feature(outs[-1]), outs[:self.num_outs]

    def _forward_exits(
        self,
        feats: List[Tensor],
        exits: Iterable[int],
        projected: Optional[List[Tensor]] = None,
        resume: Optional[Tuple[int, Tensor]] = None
    ) -> Iterator[Tuple[int, Tensor, List[Tensor]]]:
        """:meth:`forward_exits` without the check against exit_layers."""
        inputs = self._encoder_inputs(feats, projected)
        for k, memory in self.encoder.forward_exits(
                exits=exits, resume=resume, **inputs):
            yield (k, ) + self._decode(feats, memory, inputs['spatial_shapes'])

    def forward_exits(
        self,
        feats: List[Tensor],
        exits: Optional[Iterable[int]] = None,
        projected: Optional[List[Tensor]] = None,
        resume: Optional[Tuple[int, Tensor]] = None
    ) -> Iterator[Tuple[int, Tensor, List[Tensor]]]:
        """Run the encoder once and decode at several exits.

        Args:
            feats (list[Tensor]): Backbone features, each (B, C_i, H_i, W_i).
            exits (Iterable[int], optional): Exits to decode, each one of
                :attr:`exit_layers`. None decodes all of them.
            projected (list[Tensor], optional): :meth:`project_inputs` of
                ``feats`` when the caller already has them (e.g. from the
                exit gate's input); None projects them here.
            resume (tuple[int, Tensor], optional): ``(d, tokens)`` with
                ``tokens`` = :meth:`encode_layers` ``(feats, d)``: the first
                ``d`` layers are not run again (every exit ``>= d``).

        Yields:
            tuple[int, Tensor, list[Tensor]]: ``(k, mask_feature,
            multi_scale_features)`` in increasing ``k``, equal to
            :meth:`forward` with ``exit_layer=k``.
        """
        exits = self._exit_layers if exits is None else tuple(exits)
        invalid = [k for k in exits if k not in self._exit_layers]
        if invalid:
            raise ValueError(f'Exit layer(s) {invalid} not among the valid '
                             f'exits {self._exit_layers}.')
        return self._forward_exits(feats, exits, projected, resume)

    def forward(self, feats: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Encode and decode, stopping after :attr:`exit_layer` layers.

        Args:
            feats (list[Tensor]): Backbone features, each (B, C_i, H_i, W_i).

        Returns:
            tuple: A tuple containing the following:

                - mask_feature (Tensor): shape (B, out_channels, H_0, W_0).
                - multi_scale_features (list[Tensor]): ``num_outs`` encoded
                  scales, coarse to fine, each (B, feat_channels, h, w).
        """
        exit_layer = (
            self.num_layers if self._exit_layer is None else self._exit_layer)
        _, mask_feature, multi_scale_features = next(
            self._forward_exits(feats, (exit_layer, )))
        return mask_feature, multi_scale_features


@MODELS.register_module()
class EarlyExitMSDeformAttnPixelDecoder(ProScalePixelDecoder):
    """Mask2Former's ``MSDeformAttnPixelDecoder`` with early exit.

    The ``(0, ..., 0, N)`` schedule of :class:`ProScalePixelDecoder` with the
    conv pixel embedding and no TRC: same parameters, state_dict keys and
    outputs as mmdet's decoder, plus the early-exit interface. Takes mmdet's
    ``MSDeformAttnPixelDecoder`` arguments (``encoder.num_layers`` is the
    depth ``N``) and ``exit_layers``, whose default is ECO-M2F's
    ``(2, ..., N)``.

    Args:
        exit_layers (Sequence[int], optional): Valid early exits, each in
            ``[0, N]``. Defaults to None, i.e. ``(2, ..., N)``.
        **kwargs: Arguments of mmdet's ``MSDeformAttnPixelDecoder``.
    """

    def __init__(self,
                 encoder: ConfigType = None,
                 exit_layers: Optional[Sequence[int]] = None,
                 **kwargs) -> None:
        if encoder is None:
            raise ValueError(f'{type(self).__name__} needs an `encoder` '
                             'config with `num_layers` and `layer_cfg`.')
        encoder = ConfigDict(copy.deepcopy(encoder))
        num_levels = encoder.layer_cfg.self_attn_cfg.num_levels
        super().__init__(
            encoder=encoder,
            num_layers_per_stage=(0, ) * (num_levels - 1) +
            (encoder.num_layers, ),
            trc=None,
            pixel_embed='conv',
            residual=False,
            exit_layers=exit_layers,
            **kwargs)

    def default_exit_layers(self) -> Tuple[int, ...]:
        """Default exits of ECO-M2F: ``(2, ..., N)`` (``(N, )`` if N < 2).

        Returns:
            tuple[int]: The default exits.
        """
        return tuple(range(2, self.num_layers + 1)) or (self.num_layers, )
