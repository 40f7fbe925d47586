# Copyright (c) The proscale Authors. All rights reserved.
"""FLOP counting for Mask2Former-style models in the papers' convention.

The counts follow detectron2/fvcore (ported as ``mmengine.analysis``): one
multiply-add is one FLOP, norms count about 5 per element, element-wise ops,
softmax and pooling count 0. On top of mmengine's handles this module counts
what mmengine misses in Mask2Former:

* ``aten::baddbmm``: the masked cross-attention of the transformer decoder
  (``torch.baddbmm(attn_mask, q, k^T)``), counted like ``bmm``.
* the multi-scale deformable attention sampling (4 bilinear taps per sampled
  value plus 1 multiply-add to weight it), on CPU the fused kernels
  ``proscale::ms_deform_attn_forward`` and
  ``proscale::ms_deform_attn_points_forward`` or the ``grid_sample`` calls
  of ``multi_scale_deformable_attn_pytorch`` and on CUDA mmcv's
  ``MultiScaleDeformableAttnFunction``. The papers count it as 0 (only the
  linear layers of deformable attention), so it is reported separately as
  ``msda_sampling`` and left out of every other figure.
"""
import typing
from collections import Counter
from contextlib import contextmanager
from itertools import chain, islice
from math import prod
from typing import (Any, Callable, Dict, Hashable, Iterable, Iterator, List,
                    Optional, Set, Tuple, Union)

import torch
import torch.nn as nn
from mmcv.ops import MultiScaleDeformableAttention
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import Handle, get_shape

from .model_utils import (TensorForward, get_backbone_modules, get_encoder,
                          split_batch)

MSDA_SAMPLING = 'msda_sampling'
# mmcv's autograd function of the CUDA deformable attention kernel.
MSDA_FUNCTION = 'MultiScaleDeformableAttnFunction'
# proscale's fused CPU kernels (proscale.ops): from sampling locations, and
# from reference points, offsets and attention logits.
MSDA_FUSED_OP = 'proscale::ms_deform_attn_forward'
MSDA_FUSED_POINTS_OP = 'proscale::ms_deform_attn_points_forward'
# Multiply-adds of one bilinear sample: a weighted sum of 4 neighbours.
BILINEAR_TAPS = 4
FLOP_KEYS = ('total', 'backbone', 'encoder', 'decoder', MSDA_SAMPLING)
GIGA = 1e9
MEGA = 1e6
TracedInputs = Union[torch.Tensor, Tuple[torch.Tensor, ...]]
DataBatch = Dict[str, list]


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Count ``aten::baddbmm(input, batch1, batch2, beta, alpha)``.

    The batched product of ``batch1`` (n, c, t) and ``batch2`` (n, t, d) is
    n * c * t * d multiply-adds; adding ``input`` is element-wise (0).
    """
    n, c, t = get_shape(inputs[1])
    d = get_shape(inputs[2])[-1]
    return n * c * t * d


def msda_sampling_flops(batch_size: int, num_queries: int, num_heads: int,
                        head_dims: int, num_levels: int,
                        num_points: int) -> int:
    """FLOPs of the deformable sampling and weighting of one MSDA call.

    Every query samples ``num_levels * num_points`` values per head and
    channel: 4 bilinear taps each, then 1 multiply-add with its attention
    weight.

    Returns:
        int: ``(4 + 1) * B * Nq * heads * head_dims * levels * points``.
    """
    return ((BILINEAR_TAPS + 1) * batch_size * num_queries * num_heads *
            head_dims * num_levels * num_points)


def msda_function_flop_jit(inputs: List[Any],
                           outputs: List[Any]) -> typing.Counter[str]:
    """Count a deformable attention kernel: mmcv's CUDA one or the fused one.

    mmcv's ``MultiScaleDeformableAttnFunction`` and
    ``proscale::ms_deform_attn_forward`` take the same tensor inputs:
    ``value`` (B, Nv, heads, head_dims), the spatial shapes, the level start
    index, ``sampling_locations`` (B, Nq, heads, levels, points, 2) and
    ``attention_weights``; they are told apart by rank.
    """
    shapes = {len(shape): shape for shape in map(get_shape, inputs) if shape}
    if 4 not in shapes or 6 not in shapes:
        raise ValueError('deformable attention kernel: expected a 4-D '
                         'value and 6-D sampling locations, got shapes '
                         f'{sorted(shapes.values())}')
    head_dims = shapes[4][3]
    batch_size, num_queries, num_heads, num_levels, num_points = shapes[6][:5]
    return Counter({
        MSDA_SAMPLING:
        msda_sampling_flops(batch_size, num_queries, num_heads, head_dims,
                            num_levels, num_points)
    })


def msda_points_flop_jit(inputs: List[Any],
                         outputs: List[Any]) -> typing.Counter[str]:
    """Count ``proscale::ms_deform_attn_points_forward``.

    Its inputs are ``value`` (B, Nv, heads, head_dims), the spatial shapes,
    the level start index, the reference points, ``sampling_offsets``
    (B, Nq, heads, levels, points, 2) and the attention logits. The softmax
    and the locations it also computes are element-wise (0).
    """
    head_dims = get_shape(inputs[0])[3]
    batch_size, num_queries, num_heads, num_levels, num_points = get_shape(
        inputs[4])[:5]
    return Counter({
        MSDA_SAMPLING:
        msda_sampling_flops(batch_size, num_queries, num_heads, head_dims,
                            num_levels, num_points)
    })


def grid_sampler_flop_jit(msda_scopes: Set[str]) -> Handle:
    """Make an ``aten::grid_sampler`` handle aware of deformable attention.

    Inside a ``MultiScaleDeformableAttention`` module (mmcv's CPU path), one
    grid-sample output element (B * heads, head_dims, Nq, points) is one
    sampled value: its 4 taps and its weighting count as ``msda_sampling``.
    Elsewhere the op keeps mmengine's count (4 per output element).

    Args:
        msda_scopes (set[str]): Canonical names of the deformable attention
            modules of the traced model.

    Returns:
        Callable: The handle.
    """

    def handle(inputs: List[Any], outputs: List[Any]) -> typing.Counter[str]:
        numel = prod(get_shape(outputs[0]))
        scope = outputs[0].node().scopeName().split('/')[-1]
        if scope in msda_scopes:
            return Counter({MSDA_SAMPLING: (BILINEAR_TAPS + 1) * numel})
        return Counter({'grid_sampler': BILINEAR_TAPS * numel})

    return handle


class MaskFormerFlopAnalyzer(FlopAnalyzer):
    """``FlopAnalyzer`` that also counts masked and deformable attention.

    :meth:`total` and the other inherited statistics are complete (they
    include ``msda_sampling``); :meth:`papers_total` leaves the sampling out,
    as the papers do, and :meth:`sampling_total` gives it alone.

    Args:
        model (nn.Module): The module to trace.
        inputs (Tensor | tuple[Tensor]): Its inputs.
    """

    def __init__(self, model: nn.Module, inputs: TracedInputs) -> None:
        super().__init__(model, inputs)
        msda_scopes = {
            self.canonical_module_name(name)
            for name, module in model.named_modules()
            if isinstance(module, MultiScaleDeformableAttention)
        }
        handles = {
            'aten::baddbmm': baddbmm_flop_jit,
            'aten::grid_sampler': grid_sampler_flop_jit(msda_scopes),
            f'prim::PythonOp.{MSDA_FUNCTION}': msda_function_flop_jit,
            MSDA_FUSED_OP: msda_function_flop_jit,
            MSDA_FUSED_POINTS_OP: msda_points_flop_jit,
        }
        self.set_op_handle(**handles)
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)

    def papers_total(self, module_name: str = '') -> int:
        """FLOPs of a module without the deformable sampling."""
        counts = self.by_operator(module_name)
        return sum(counts.values()) - counts[MSDA_SAMPLING]

    def sampling_total(self, module_name: str = '') -> int:
        """FLOPs of the deformable sampling inside a module."""
        return self.by_operator(module_name)[MSDA_SAMPLING]


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put a model in eval mode and restore its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of a model."""
    return sum(parameter.numel() for parameter in model.parameters())


def count_flops(model: nn.Module, data_batch: DataBatch) -> Dict[str, float]:
    """Count the FLOPs of a Mask2Former-style model on one data batch.

    The batch is preprocessed by the model's data preprocessor (test mode)
    and the network forward (``mode='tensor'``: backbone, pixel decoder,
    transformer decoder and prediction heads of every decoder layer, no
    post-processing) is traced. Models whose forward depends on the input
    (early exit, exit gate) are counted along the path this batch takes.

    Args:
        model (nn.Module): An mmdet MaskFormer-family detector, an mmseg
            segmentor with a Mask2Former/MaskFormer head, or an mmdet
            DETR-family detector (DINO, Deformable DETR).
        data_batch (dict): ``inputs`` and ``data_samples`` as a dataloader
            yields them.

    Returns:
        dict[str, float]: GFLOPs ``total``, ``backbone`` (with the neck, if
        any), ``encoder`` (the pixel decoder, or the DETR encoder),
        ``decoder`` (the rest: the transformer decoder and prediction heads,
        and for DETRs also the embeddings and the two-stage query
        selection), all in the papers' convention, ``msda_sampling``
        (GFLOPs of the deformable sampling, counted in none of the others)
        and ``params`` (millions).
    """
    encoder_module = get_encoder(model)
    backbone_modules = get_backbone_modules(model)
    with torch.no_grad(), _eval_mode(model):
        data = model.data_preprocessor(data_batch, False)
        traced = TensorForward(model, data['data_samples'])
        analyzer = MaskFormerFlopAnalyzer(traced, (data['inputs'], ))
        names = {module: name for name, module in traced.named_modules()}
        total = analyzer.papers_total()
        backbone = sum(
            analyzer.papers_total(names[module])
            for module in backbone_modules)
        encoder = analyzer.papers_total(names[encoder_module])
        flops = dict(
            total=total,
            backbone=backbone,
            encoder=encoder,
            decoder=total - backbone - encoder,
            msda_sampling=analyzer.sampling_total())
    result = {key: value / GIGA for key, value in flops.items()}
    result['params'] = count_parameters(model) / MEGA
    return result


def average_flops(
        model: nn.Module,
        dataloader: Iterable,
        num_images: int,
        path_key: Optional[Callable[[DataBatch], Hashable]] = None
) -> Dict[str, Union[float, int]]:
    """Average :func:`count_flops` over images of a dataloader.

    Every image is counted alone at its own (test) size, as the papers do;
    for models with input-dependent paths the average is the expected cost.

    Args:
        model (nn.Module): See :func:`count_flops`.
        dataloader (Iterable): Yields data batches (any batch size).
        num_images (int): How many images to average over (fewer if the
            dataloader runs out).
        path_key (Callable, optional): Maps a one-image batch to what
            decides its count (e.g. its input size and the exit a gate
            picks, :func:`~.exit_flops.gated_path_key`): images with equal
            keys share the first one's count instead of each being traced.
            None traces every image. Defaults to None.

    Returns:
        dict: The keys of :func:`count_flops`, averaged, and ``num_images``.
    """
    if num_images <= 0:
        raise ValueError(f'num_images must be positive, got {num_images}')
    images = chain.from_iterable(map(split_batch, dataloader))
    sums: typing.Counter[str] = Counter()
    counts: Dict[Hashable, Dict[str, float]] = {}
    counted = 0
    for image_batch in islice(images, num_images):
        if path_key is None:
            sums.update(count_flops(model, image_batch))
        else:
            key = path_key(image_batch)
            if key not in counts:
                counts[key] = count_flops(model, image_batch)
            sums.update(counts[key])
        counted += 1
    if counted == 0:
        raise ValueError('the dataloader yielded no images')
    result: Dict[str, Union[float, int]] = {
        key: sums[key] / counted
        for key in FLOP_KEYS
    }
    result['params'] = count_parameters(model) / MEGA
    result['num_images'] = counted
    return result


def format_flops(result: Dict[str, Any]) -> str:
    """Format a FLOP count as a small text table.

    Args:
        result (dict): Output of :func:`count_flops` or
            :func:`average_flops`.

    Returns:
        str: One line per figure.
    """
    rows = [(key, f'{result[key]:.3f} G') for key in FLOP_KEYS]
    rows.append(('params', f"{result['params']:.3f} M"))
    width = max(len(key) for key, _ in rows)
    return '\n'.join(f'{key:<{width}}  {value:>14}' for key, value in rows)
