# Copyright (c) The proscale Authors. All rights reserved.
import copy
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers import DeformableDetrTransformerEncoderLayer
from mmdet.models.layers.transformer import Mask2FormerTransformerEncoder
from mmdet.models.layers.transformer.deformable_detr_layers import \
    checkpoint_wrapper
from mmdet.utils import ConfigType, OptConfigType
from mmengine.model import ModuleList
from torch import Tensor

from .fused_ms_deform_attn import FusedMultiScaleDeformableAttention


class ProScaleTransformerEncoder(Mask2FormerTransformerEncoder):
    """Progressive token length scaling encoder of PRO-SCALE with early exit.

    The tokens of ``L`` scales, ordered coarse to fine, enter the encoder
    progressively: stage ``s`` (1-based) appends the tokens of scale ``s`` to
    the output of stage ``s - 1`` and runs ``num_layers_per_stage[s - 1]``
    deformable-attention layers with ``s`` levels over them. Because new
    tokens are appended after the encoded ones, the spatial shapes, level
    start indices, reference points, position embeddings and padding masks
    of stage ``s`` are the first ``s`` levels of the full ones. For the
    usual ``L = 3`` inputs [1/32, 1/16, 1/8]:

    =====  ====================  ======  =================================
    Stage  Tokens                Levels  Layers
    =====  ====================  ======  =================================
    1      1/32                  1       ``num_layers_per_stage[0]``
    2      1/32 + 1/16           2       ``num_layers_per_stage[1]``
    3      1/32 + 1/16 + 1/8     3       ``num_layers_per_stage[2]``
    =====  ====================  ======  =================================

    The schedule ``(0, ..., 0, N)`` is mmdet's
    ``Mask2FormerTransformerEncoder`` with ``N`` layers and the same
    parameter names. All layers live in one
    flat ``self.layers`` (stage 1 layers first); their self-attention is
    :class:`FusedMultiScaleDeformableAttention`.

    Early exit: the encoder can stop after any ``k`` of its
    ``num_layers`` layers (``0 <= k <= num_layers``); layers after ``k``
    are not run. An exit before the last stage returns the encoded tokens
    followed by the not yet encoded input tokens of the remaining scales,
    exactly as they would enter the next stage, so every exit yields tokens
    for all ``L`` scales.

    Args:
        num_layers_per_stage (Sequence[int]): Number of layers of each stage,
            coarse to fine; its length is the number of scales ``L``.
        layer_cfg (:obj:`ConfigDict` or dict): Config of
            ``DeformableDetrTransformerEncoderLayer``. Its
            ``self_attn_cfg.num_levels`` must be ``L``; stage ``s`` layers
            are built with ``num_levels=s``.
        residual (bool): Add the stage input tokens (the coarse tokens as
            they entered the encoder) after every layer of every stage but
            the last. Defaults to False.
        num_cp (int): Number of leading layers wrapped with activation
            checkpointing (requires fairscale). Defaults to -1.
        init_cfg (:obj:`ConfigDict` or dict, optional): Initialization
            config dict. Defaults to None.
    """

    def __init__(self,
                 num_layers_per_stage: Sequence[int],
                 layer_cfg: ConfigType,
                 residual: bool = False,
                 num_cp: int = -1,
                 init_cfg: OptConfigType = None) -> None:
        self.num_layers_per_stage = tuple(num_layers_per_stage)
        self.residual = residual
        super().__init__(
            num_layers=sum(self.num_layers_per_stage),
            layer_cfg=layer_cfg,
            num_cp=num_cp,
            init_cfg=init_cfg)

    @property
    def num_levels(self) -> int:
        """int: Number of scales (= number of stages)."""
        return len(self.num_layers_per_stage)

    @property
    def layer_levels(self) -> List[int]:
        """list[int]: Number of attention levels of each layer."""
        return [
            stage + 1 for stage, num in enumerate(self.num_layers_per_stage)
            for _ in range(num)
        ]

    def check_exits(self, exits: Iterable[int]) -> Tuple[int, ...]:
        """Validate exits against the depth of the encoder.

        Args:
            exits (Iterable[int]): Exits ``k``, the number of layers to run.

        Returns:
            tuple[int]: The exits, increasing and without duplicates.

        Raises:
            ValueError: If an exit is not an int in ``[0, num_layers]``.
        """
        exits = tuple(exits)
        for k in exits:
            if isinstance(k, bool) or not isinstance(k, int):
                raise ValueError(f'Exit {k!r} is not an int.')
            if not 0 <= k <= self.num_layers:
                raise ValueError(
                    f'Exit {k} is out of range [0, {self.num_layers}] of the '
                    f'{self.num_layers}-layer encoder with stages '
                    f'{self.num_layers_per_stage}.')
        return tuple(sorted(set(exits)))

    def _init_layers(self) -> None:
        """Initialize the layers of all stages in one flat ModuleList.

        The layers are mmdet's ``DeformableDetrTransformerEncoderLayer`` with
        :class:`FusedMultiScaleDeformableAttention` as self-attention (same
        parameters and outputs, the fused kernel on the CPU).
        """
        layers = []
        for num_levels in self.layer_levels:
            layer_cfg = copy.deepcopy(self.layer_cfg)
            layer_cfg['self_attn_cfg']['num_levels'] = num_levels
            layers.append(
                FusedMultiScaleDeformableAttention.convert(
                    DeformableDetrTransformerEncoderLayer(**layer_cfg)))
        self.layers = ModuleList(layers)
        if self.num_cp > 0:
            if checkpoint_wrapper is None:
                raise ImportError('num_cp > 0 needs fairscale: '
                                  'pip install fairscale')
            for i in range(self.num_cp):
                self.layers[i] = checkpoint_wrapper(self.layers[i])
        self.embed_dims = self.layer_cfg['self_attn_cfg'].get(
            'embed_dims', 256)

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                key_padding_mask: Optional[Tensor],
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reference_points: Tensor,
                exit_layer: Optional[int] = None,
                **kwargs) -> Tensor:
        """Encode the tokens of all scales.

        Args:
            query (Tensor): Input tokens of all ``L`` scales concatenated
                coarse to fine, shape (bs, num_queries, dim).
            query_pos (Tensor): Position (+ level) embedding of ``query``,
                shape (bs, num_queries, dim).
            key_padding_mask (Tensor, optional): Padding mask, shape
                (bs, num_queries); None when nothing is padded.
            spatial_shapes (Tensor): (h, w) of each scale, shape (L, 2).
            level_start_index (Tensor): Start index of each scale in
                ``query``, shape (L, ).
            valid_ratios (Tensor): Valid ratios, shape (bs, L, 2).
            reference_points (Tensor): Reference points, shape
                (bs, num_queries, L, 2).
            exit_layer (int, optional): Stop after this many layers. None
                runs all layers. Defaults to None.

        Returns:
            Tensor: Encoded tokens of all scales, shape
            (bs, num_queries, dim).
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
                reference_points=reference_points,
                exits=(exit_layer, ),
                **kwargs))
        return memory

    def forward_exits(self, query: Tensor, query_pos: Tensor,
                      key_padding_mask: Optional[Tensor],
                      spatial_shapes: Tensor,
                      level_start_index: Tensor, valid_ratios: Tensor,
                      reference_points: Tensor, exits: Iterable[int],
                      resume: Optional[Tuple[int, Tensor]] = None,
                      **kwargs) -> Iterator[Tuple[int, Tensor]]:
        """Run the layers once and yield the tokens at every exit.

        Args:
            query, query_pos, key_padding_mask, spatial_shapes,
            level_start_index, valid_ratios, reference_points: See
                :meth:`forward`.
            exits (Iterable[int]): Exits ``k`` (number of layers run),
                ``0 <= k <= num_layers``.
            resume (tuple[int, Tensor], optional): ``(d, memory)``, the
                tokens this method yielded at exit ``d`` for the same
                inputs: the first ``d`` layers are not run again, and every
                exit must be ``>= d``. None starts from ``query``.

        Yields:
            tuple[int, Tensor]: ``(k, memory)`` in increasing ``k``, memory
            of shape (bs, num_queries, dim) holding all ``L`` scales.
        """
        pending = list(self.check_exits(exits))
        done, resumed = (0, query) if resume is None else resume
        if pending and pending[0] < done:
            raise ValueError(f'exits {pending} cannot resume after {done} '
                             'encoder layers')
        level_ends = level_start_index + spatial_shapes.prod(1)
        memory = query[:, :0]
        layer_idx = 0
        if pending and pending[0] == done:
            yield done, resumed
            pending.pop(0)
        for stage, num_layers in enumerate(self.num_layers_per_stage):
            if not pending:
                return
            num_levels = stage + 1
            end = level_ends[stage]
            memory = torch.cat([memory, query[:, memory.size(1):end]], dim=1)
            residual = query[:, :end] if (
                self.residual and num_levels < self.num_levels) else None
            for _ in range(num_layers):
                if layer_idx < done:
                    layer_idx += 1
                    if layer_idx == done:
                        memory = resumed[:, :end]
                    continue
                memory = self.layers[layer_idx](
                    query=memory,
                    query_pos=query_pos[:, :end],
                    key_padding_mask=None if key_padding_mask is None else
                    key_padding_mask[:, :end],
                    spatial_shapes=spatial_shapes[:num_levels],
                    level_start_index=level_start_index[:num_levels],
                    valid_ratios=valid_ratios[:, :num_levels],
                    reference_points=reference_points[:, :end, :num_levels],
                    **kwargs)
                if residual is not None:
                    memory = memory + residual
                layer_idx += 1
                if layer_idx == pending[0]:
                    yield layer_idx, torch.cat([memory, query[:, end:]], dim=1)
                    pending.pop(0)
                    if not pending:
                        return
