# Copyright (c) The proscale Authors. All rights reserved.
"""PRO-SCALE encoder for the DETR family (DINO, Deformable DETR)."""
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType
from torch import Tensor

from .progressive_encoder import ProScaleTransformerEncoder
from .token_recalibration import build_token_recalibration


def _reverse_levels(tokens: Tensor, sizes: List[int]) -> Tensor:
    """Reverse the order of the levels of a level-concatenated tensor.

    Args:
        tokens (Tensor): Tokens of all levels concatenated along dim 1,
            shape (bs, sum(sizes), ...).
        sizes (list[int]): Number of tokens of each level, in the order of
            ``tokens``.

    Returns:
        Tensor: The same tokens with the levels in reverse order.
    """
    return torch.cat(torch.split(tokens, sizes, dim=1)[::-1], dim=1)


@MODELS.register_module()
class ProScaleDetrTransformerEncoder(ProScaleTransformerEncoder):
    """PRO-SCALE encoder with mmdet's ``DeformableDetrTransformerEncoder``
    interface, for DINO and Deformable DETR.

    The detectors give the scales fine to coarse (1/8, 1/16, 1/32, 1/64 for
    the usual 4 scales). This encoder reverses them to coarse to fine,
    gates every coarser scale from the finest with token re-calibration
    (TRC), runs :class:`ProScaleTransformerEncoder` (stage ``s`` adds scale
    ``s`` and runs ``num_layers_per_stage[s - 1]`` layers with ``s``
    levels), and restores the detectors' fine-to-coarse order, so its output
    contract is mmdet's: memory of shape (bs, num_queries, dim) over all
    scales, in the input order (two-stage query selection, whose proposals
    scale with the level index, sees every level where it expects it).

    With all layers in the last stage and no TRC the encoder computes
    mmdet's ``DeformableDetrTransformerEncoder`` with the attention levels
    indexed coarse to fine instead of fine to coarse; see
    :func:`reverse_attention_levels` to carry mmdet weights over.

    Args:
        num_layers_per_stage (Sequence[int]): Non-negative number of layers
            of each stage, coarse to fine; one stage per scale, i.e.
            ``layer_cfg.self_attn_cfg.num_levels`` entries.
        layer_cfg (:obj:`ConfigDict` or dict): Config of
            ``DeformableDetrTransformerEncoderLayer``.
        trc (dict, optional): Token re-calibration (see
            ``build_token_recalibration``): ``type`` (``'linear'`` or
            ``'conv'``), ``temperature`` and ``layout`` (``'legacy'``: the
            authors' token reshape; ``'spatial'``: spatially co-located
            resize). Applied to the raw input tokens (before position and
            level embedding), padding included. None disables TRC. Defaults
            to None.
        residual (bool): Add the stage input tokens after every layer of
            every stage but the last. Defaults to False.
        num_layers (int, optional): mmdet's depth key, kept so that mmdet's
            configs can be inherited: None or ``sum(num_layers_per_stage)``.
            Defaults to None.
        num_cp (int): Number of leading layers wrapped with activation
            checkpointing (requires fairscale). Defaults to -1.
        init_cfg (:obj:`ConfigDict` or dict, optional): Initialization
            config dict. Defaults to None.
    """

    def __init__(self,
                 num_layers_per_stage: Sequence[int],
                 layer_cfg: ConfigType,
                 trc: Optional[dict] = None,
                 residual: bool = False,
                 num_layers: Optional[int] = None,
                 num_cp: int = -1,
                 init_cfg: OptConfigType = None) -> None:
        num_levels = layer_cfg['self_attn_cfg'].get('num_levels', 4)
        stages = tuple(num_layers_per_stage) if isinstance(
            num_layers_per_stage, Sequence) else None
        if stages is None or len(stages) != num_levels or any(
                isinstance(n, bool) or not isinstance(n, int) or n < 0
                for n in stages):
            raise ValueError(
                f'num_layers_per_stage={num_layers_per_stage!r} must hold '
                f'one non-negative int per encoder scale ({num_levels}, '
                'layer_cfg.self_attn_cfg.num_levels).')
        if num_layers not in (None, sum(stages)):
            raise ValueError(
                f'encoder.num_layers={num_layers} contradicts '
                f'num_layers_per_stage={stages} ({sum(stages)} layers); set '
                'encoder.num_layers=None: num_layers_per_stage defines the '
                'depth.')
        super().__init__(
            num_layers_per_stage=stages,
            layer_cfg=layer_cfg,
            residual=residual,
            num_cp=num_cp,
            init_cfg=init_cfg)
        self.trc = build_token_recalibration(
            trc, self.embed_dims) if num_levels > 1 else None

    def _coarse_to_fine_inputs(self, query: Tensor, query_pos: Tensor,
                               key_padding_mask: Optional[Tensor],
                               spatial_shapes: Tensor,
                               valid_ratios: Tensor) -> Dict[str, Tensor]:
        """Reverse the scales to coarse to fine and apply TRC.

        Args:
            query, query_pos, key_padding_mask, spatial_shapes,
            valid_ratios: See :meth:`forward` (fine to coarse).

        Returns:
            dict[str, Tensor]: The inputs of
            :meth:`ProScaleTransformerEncoder.forward_exits`, coarse to fine,
            with the reference points of the reversed scales.
        """
        sizes = spatial_shapes.prod(1).tolist()
        spatial_shapes = spatial_shapes.flip(0)
        valid_ratios = valid_ratios.flip(1)
        query = _reverse_levels(query, sizes)
        if self.trc is not None:
            hws = spatial_shapes.tolist()
            query = torch.cat(
                self.trc.forward_scales(
                    torch.split(query, sizes[::-1], dim=1), hws),
                dim=1)
        return dict(
            query=query,
            query_pos=_reverse_levels(query_pos, sizes),
            key_padding_mask=None if key_padding_mask is None else
            _reverse_levels(key_padding_mask, sizes),
            spatial_shapes=spatial_shapes,
            level_start_index=torch.cat((spatial_shapes.new_zeros(
                (1, )), spatial_shapes.prod(1).cumsum(0)[:-1])),
            valid_ratios=valid_ratios,
            reference_points=self.get_encoder_reference_points(
                spatial_shapes, valid_ratios, device=query.device))

    def forward_exits(self, query: Tensor, query_pos: Tensor,
                      key_padding_mask: Optional[Tensor],
                      spatial_shapes: Tensor, level_start_index: Tensor,
                      valid_ratios: Tensor, exits: Iterable[int],
                      **kwargs) -> Iterator[Tuple[int, Tensor]]:
        """Run the layers once and yield the memory at every exit.

        Args:
            query, query_pos, key_padding_mask, spatial_shapes,
            level_start_index, valid_ratios: See :meth:`forward`.
            exits (Iterable[int]): Exits ``k`` (number of layers run),
                ``0 <= k <= num_layers``.

        Yields:
            tuple[int, Tensor]: ``(k, memory)`` in increasing ``k``, memory
            of shape (bs, num_queries, dim) over all scales, fine to coarse
            as the input. Scales whose stage has not run yet hold their
            (TRC-gated) input tokens.
        """
        inputs = self._coarse_to_fine_inputs(query, query_pos,
                                             key_padding_mask, spatial_shapes,
                                             valid_ratios)
        sizes = inputs['spatial_shapes'].prod(1).tolist()
        for k, memory in super().forward_exits(
                exits=exits, **inputs, **kwargs):
            yield k, _reverse_levels(memory, sizes)

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                key_padding_mask: Optional[Tensor],
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                exit_layer: Optional[int] = None,
                **kwargs) -> Tensor:
        """Encode the tokens of all scales.

        Args:
            query (Tensor): Input tokens of all ``L`` scales concatenated
                fine to coarse, shape (bs, num_queries, dim).
            query_pos (Tensor): Position (+ level) embedding of ``query``,
                shape (bs, num_queries, dim).
            key_padding_mask (Tensor, optional): Padding mask, shape
                (bs, num_queries); None when no image of the batch is
                padded.
            spatial_shapes (Tensor): (h, w) of each scale, fine to coarse,
                shape (L, 2).
            level_start_index (Tensor): Start index of each scale in
                ``query``, shape (L, ). Unused: recomputed for the reversed
                scales.
            valid_ratios (Tensor): Valid ratios, shape (bs, L, 2).
            exit_layer (int, optional): Stop after this many layers. None
                runs all layers. Defaults to None.

        Returns:
            Tensor: Encoded tokens of all scales, fine to coarse as
            ``query``, shape (bs, num_queries, dim).
        """
        exit_layer = self.num_layers if exit_layer is None else exit_layer
        _, memory = next(
            self.forward_exits(
                query=query,
                query_pos=query_pos,
                key_padding_mask=key_padding_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                exits=(exit_layer, ),
                **kwargs))
        return memory


def reverse_attention_levels(state_dict: Dict[str, Tensor],
                             num_heads: int, num_levels: int,
                             num_points: int) -> Dict[str, Tensor]:
    """Reverse the level axis of deformable-attention weights.

    mmdet's DETR encoder indexes the levels of its deformable attention fine
    to coarse, :class:`ProScaleDetrTransformerEncoder` coarse to fine. This
    maps the ``sampling_offsets`` and ``attention_weights`` projections of
    ``num_levels``-level layers from one order to the other (the mapping is
    its own inverse), so that e.g. mmdet's 6-layer encoder loads into the
    ``(0, ..., 0, 6)`` schedule with the same outputs. Other entries are
    returned unchanged.

    Args:
        state_dict (dict[str, Tensor]): A state dict (of an encoder or of a
            whole detector).
        num_heads (int): Attention heads.
        num_levels (int): Levels of the layers to convert; layers whose
            projections have another size are left unchanged.
        num_points (int): Sampling points per head and level.

    Returns:
        dict[str, Tensor]: A new state dict.
    """
    per_level = {
        'sampling_offsets': num_points * 2,
        'attention_weights': num_points
    }
    converted = dict(state_dict)
    for key, value in state_dict.items():
        parts = key.split('.')
        if len(parts) < 2 or parts[-2] not in per_level:
            continue
        rows = per_level[parts[-2]]
        if value.shape[0] != num_heads * num_levels * rows:
            continue
        shape = (num_heads, num_levels, rows) + tuple(value.shape[1:])
        converted[key] = value.reshape(shape).flip(1).reshape(value.shape)
    return converted
