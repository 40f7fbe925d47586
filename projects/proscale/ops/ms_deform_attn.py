# Copyright (c) The proscale Authors. All rights reserved.
"""Multi-scale deformable attention with a fused CPU kernel.

:func:`multi_scale_deformable_attn` computes what mmcv's
``multi_scale_deformable_attn_pytorch`` computes. On the CPU it runs the
fused, multi-threaded C++ kernel of ``proscale._ext``
(``torch.ops.proscale.ms_deform_attn_forward``), which samples all levels,
points and heads and weights the samples in one pass, without the per-level
``grid_sample`` tensors of the PyTorch path.

The kernel has no backward: whenever gradients are needed the PyTorch path
runs instead, so training is unchanged. It is also skipped on other devices,
for dtypes other than float32/float64, when :func:`~.switch.is_enabled` is
False (``PROSCALE_FUSED_OPS=0`` or :func:`~.switch.fused_ops`), and when the
extension was not built; in the last case a warning is logged once.
"""
import logging

import torch
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch
from mmengine.logging import print_log
from torch import Tensor

from .switch import is_enabled

try:
    from .. import _ext  # noqa: F401 (registers torch.ops.proscale)
except ImportError as error:
    _EXT_ERROR = error
else:
    _EXT_ERROR = None

_FUSED_DTYPES = (torch.float32, torch.float64)
_state = dict(warned=False)


def is_available() -> bool:
    """bool: Whether the C++ extension ``proscale._ext`` was built."""
    return _EXT_ERROR is None


def _warn_unavailable_once() -> None:
    if not _state['warned']:
        _state['warned'] = True
        print_log(
            'proscale._ext is not available, so multi-scale deformable '
            f'attention runs the slower PyTorch path ({_EXT_ERROR}). '
            'Reinstall proscale with a C++ compiler to build it.',
            logger='current',
            level=logging.WARNING)


def _use_fused(*tensors: Tensor) -> bool:
    """Whether the fused kernel can compute a call on these tensors."""
    value = tensors[0]
    if not is_enabled() or value.device.type != 'cpu':
        return False
    if value.dtype not in _FUSED_DTYPES:
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if not is_available():
        _warn_unavailable_once()
        return False
    return True


def multi_scale_deformable_attn(value: Tensor, spatial_shapes: Tensor,
                                level_start_index: Tensor,
                                sampling_locations: Tensor,
                                attention_weights: Tensor) -> Tensor:
    """Multi-scale deformable attention: sample, weight and sum.

    Args:
        value (Tensor): Values of all levels, flattened and concatenated,
            shape (bs, num_keys, num_heads, channels).
        spatial_shapes (Tensor): (h, w) of each level, shape
            (num_levels, 2).
        level_start_index (Tensor): Index of each level's first key, shape
            (num_levels, ).
        sampling_locations (Tensor): Normalized (x, y) sampling locations,
            (0, 0) the top-left and (1, 1) the bottom-right corner of a
            level, shape (bs, num_queries, num_heads, num_levels,
            num_points, 2).
        attention_weights (Tensor): Weight of each sample, shape
            (bs, num_queries, num_heads, num_levels, num_points).

    Returns:
        Tensor: Shape (bs, num_queries, num_heads * channels), equal to
        ``multi_scale_deformable_attn_pytorch``'s output.
    """
    if _use_fused(value, sampling_locations, attention_weights):
        return torch.ops.proscale.ms_deform_attn_forward(
            value, spatial_shapes, level_start_index, sampling_locations,
            attention_weights)
    return multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                               sampling_locations,
                                               attention_weights)


def multi_scale_deformable_attn_from_points(
        value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
        reference_points: Tensor, sampling_offsets: Tensor,
        attention_logits: Tensor) -> Tensor:
    """Multi-scale deformable attention from the module's predictions.

    What mmcv's ``MultiScaleDeformableAttention`` computes from its
    predictions for 2-d reference points: the sampling locations
    ``reference_points + sampling_offsets / (w, h)``, the attention weights
    ``softmax(attention_logits)`` and :func:`multi_scale_deformable_attn`.
    The fused kernel (``torch.ops.proscale.ms_deform_attn_points_forward``)
    does all three in its one pass.

    Args:
        value (Tensor): Shape (bs, num_keys, num_heads, channels).
        spatial_shapes (Tensor): (h, w) of each level, shape
            (num_levels, 2).
        level_start_index (Tensor): Shape (num_levels, ).
        reference_points (Tensor): Normalized (x, y), shape
            (bs, num_queries, num_levels, 2).
        sampling_offsets (Tensor): Offsets in pixels of each level, shape
            (bs, num_queries, num_heads, num_levels, num_points, 2).
        attention_logits (Tensor): Shape (bs, num_queries, num_heads,
            num_levels * num_points).

    Returns:
        Tensor: Shape (bs, num_queries, num_heads * channels).
    """
    if _use_fused(value, reference_points, sampling_offsets,
                  attention_logits):
        return torch.ops.proscale.ms_deform_attn_points_forward(
            value, spatial_shapes, level_start_index, reference_points,
            sampling_offsets, attention_logits)
    attention_weights = attention_logits.softmax(-1).view(
        sampling_offsets.shape[:-1])
    offset_normalizer = spatial_shapes.flip(-1)
    sampling_locations = reference_points[:, :, None, :, None, :] \
        + sampling_offsets \
        / offset_normalizer[None, None, None, :, None, :]
    return multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                               sampling_locations,
                                               attention_weights)
