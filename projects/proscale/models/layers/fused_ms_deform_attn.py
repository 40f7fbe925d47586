# Copyright (c) The proscale Authors. All rights reserved.
from typing import Optional

import torch.nn as nn
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
from mmdet.registry import MODELS
from torch import Tensor

from ...ops import (multi_scale_deformable_attn,
                    multi_scale_deformable_attn_from_points)


@MODELS.register_module()
class FusedMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` with the fused CPU kernel.

    Same arguments, parameters, state_dict and outputs as mmcv's module
    (batch-first or not, 2-d reference points or 4-d boxes). On the CPU,
    when no gradient is needed, the fused kernel computes the sampling
    locations, the softmax of the attention weights and the sampling in one
    pass (:func:`proscale.ops.multi_scale_deformable_attn_from_points`; with
    4-d boxes, only the sampling); otherwise mmcv's PyTorch path runs, and
    on CUDA mmcv's kernel.

    The encoders of this project build it themselves. For any other model
    built with mmcv's module (mmdet's ``MSDeformAttnPixelDecoder``,
    Deformable DETR, DINO, ...), :meth:`convert` swaps it in after the
    model is built; configs that build attention from the registry can name
    ``type='FusedMultiScaleDeformableAttention'``.

    Modified from mmcv 2.1 ``mmcv/ops/multi_scale_deform_attn.py``
    (``MultiScaleDeformableAttention.forward``).
    """

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace mmcv's deformable attention in a module by this class.

        Every ``MultiScaleDeformableAttention`` (exactly that class, not a
        subclass) inside ``module`` is replaced in place by this class,
        holding the same parameters, so outputs, state_dict and optimizer
        state are unchanged. It can be called before or after loading
        weights.

        Args:
            module (nn.Module): A model or any part of one.

        Returns:
            nn.Module: ``module`` converted, or a new module if ``module``
            itself is mmcv's attention.
        """
        if type(module) is MultiScaleDeformableAttention:
            return cls._from_mmcv(module)
        for name, child in module.named_children():
            converted = cls.convert(child)
            if converted is not child:
                setattr(module, name, converted)
        return module

    @classmethod
    def _from_mmcv(
        cls, module: MultiScaleDeformableAttention
    ) -> 'FusedMultiScaleDeformableAttention':
        """This class around the state of mmcv's attention.

        The state (parameters, buffers, submodules, hooks, settings) is
        shared, not copied or re-initialized, so no random numbers are
        drawn; ``module`` should not be used on its own afterwards.
        """
        fused = cls.__new__(cls)
        fused.__dict__.update(module.__dict__)
        return fused

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Multi-scale deformable attention.

        Args:
            query (Tensor): Queries, shape (num_queries, bs, embed_dims), or
                (bs, num_queries, embed_dims) if ``batch_first``.
            key (Tensor, optional): Unused, as in mmcv.
            value (Tensor, optional): Values of all levels, shaped like
                ``query`` with ``num_keys`` tokens. None uses ``query``.
            identity (Tensor, optional): Added to the output; None uses
                ``query``.
            query_pos (Tensor, optional): Added to ``query``.
            key_padding_mask (Tensor, optional): True for padded keys, shape
                (bs, num_keys).
            reference_points (Tensor): Normalized points (bs, num_queries,
                num_levels, 2) or boxes (bs, num_queries, num_levels, 4).
            spatial_shapes (Tensor): (h, w) of each level, shape
                (num_levels, 2).
            level_start_index (Tensor): First key of each level, shape
                (num_levels, ).

        Returns:
            Tensor: Shaped like ``query``.
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)

        bs, num_query, _ = query.shape
        bs, num_value, _ = value.shape
        assert (spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum() == num_value

        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, num_value, self.num_heads, -1)
        sampling_offsets = self.sampling_offsets(query).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points, 2)
        attention_logits = self.attention_weights(query).view(
            bs, num_query, self.num_heads, self.num_levels * self.num_points)
        if reference_points.shape[-1] == 2 and not value.is_cuda:
            # On the CPU the fused kernel also computes the locations and
            # the softmax.
            output = multi_scale_deformable_attn_from_points(
                value, spatial_shapes, level_start_index, reference_points,
                sampling_offsets, attention_logits)
        else:
            output = self._sample(value, spatial_shapes, level_start_index,
                                  reference_points, sampling_offsets,
                                  attention_logits)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity

    def _sample(self, value: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, reference_points: Tensor,
                sampling_offsets: Tensor, attention_logits: Tensor) -> Tensor:
        """mmcv's steps for boxes or CUDA: locations, softmax, sampling."""
        bs, num_query = sampling_offsets.shape[:2]
        attention_weights = attention_logits.softmax(-1).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points)
        if reference_points.shape[-1] == 2:
            offset_normalizer = spatial_shapes.flip(-1)
            sampling_locations = reference_points[:, :, None, :, None, :] \
                + sampling_offsets \
                / offset_normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            sampling_locations = reference_points[:, :, None, :, None, :2] \
                + sampling_offsets / self.num_points \
                * reference_points[:, :, None, :, None, 2:] \
                * 0.5
        else:
            raise ValueError(
                f'Last dim of reference_points must be'
                f' 2 or 4, but get {reference_points.shape[-1]} instead.')
        if value.is_cuda:
            return MultiScaleDeformableAttnFunction.apply(
                value, spatial_shapes, level_start_index, sampling_locations,
                attention_weights, self.im2col_step)
        return multi_scale_deformable_attn(value, spatial_shapes,
                                           level_start_index,
                                           sampling_locations,
                                           attention_weights)
