# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops import multi_scale_deform_attn as mmcv_msda
from analysis_helpers import (SHAPE, expected_masked_attention,
                              expected_msda_sampling)
from mmengine.analysis import FlopAnalyzer

from proscale.analysis import (MaskFormerFlopAnalyzer, TensorForward,
                               average_flops, count_flops, fixed_shape_batch,
                               flop_count, get_pixel_decoder)
from proscale.analysis.flop_count import (BILINEAR_TAPS, MSDA_FUSED_OP,
                                          MSDA_FUSED_POINTS_OP, MSDA_SAMPLING)
from proscale.models.layers import FusedMultiScaleDeformableAttention
from proscale.ops import (fused_ops, is_available, multi_scale_deformable_attn)
from proscale.ops import ms_deform_attn as msda_ops

# Toy dimensions, small enough to count by hand.
BATCH, TOKENS, IN_DIMS, OUT_DIMS = 1, 3, 6, 5
EMBED, HEADS, LEVELS, POINTS = 8, 2, 2, 2
SPATIAL_SHAPES = [[2, 3], [1, 2]]
NUM_VALUES = 2 * 3 + 1 * 2
LEVEL_START_INDEX = [0, 2 * 3]
NUM_QUERIES = 4
HEAD_DIMS = EMBED // HEADS

# Linear(6 -> 5) on 3 tokens.
LINEAR_FLOPS = TOKENS * IN_DIMS * OUT_DIMS
# baddbmm of (2, 3, 4) x (2, 4, 5).
BADDBMM_FLOPS = 2 * 3 * 4 * 5
# The four linear layers of deformable attention: value_proj on the values,
# sampling_offsets (8 -> heads*levels*points*2), attention_weights
# (8 -> heads*levels*points) and output_proj on the queries.
MSDA_LINEAR_FLOPS = (
    NUM_VALUES * EMBED * EMBED +
    NUM_QUERIES * EMBED * HEADS * LEVELS * POINTS * 2 +
    NUM_QUERIES * EMBED * HEADS * LEVELS * POINTS +
    NUM_QUERIES * EMBED * EMBED)
# Sampled values: one per query, head, channel, level and point.
SAMPLES = BATCH * NUM_QUERIES * HEADS * HEAD_DIMS * LEVELS * POINTS
# 4 bilinear taps + 1 weighting multiply-add per sampled value.
SAMPLING_FLOPS = 5 * SAMPLES
PAPERS_TOTAL = LINEAR_FLOPS + BADDBMM_FLOPS + MSDA_LINEAR_FLOPS


class ToyModel(nn.Module):
    """A Linear, a baddbmm and one deformable attention layer."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(IN_DIMS, OUT_DIMS)
        self.msda = MultiScaleDeformableAttention(
            embed_dims=EMBED,
            num_heads=HEADS,
            num_levels=LEVELS,
            num_points=POINTS,
            batch_first=True)

    def forward(self, tokens, bias, batch1, batch2, query, value,
                reference_points):
        spatial_shapes = torch.tensor(SPATIAL_SHAPES)
        level_start_index = torch.tensor(LEVEL_START_INDEX)
        return (self.linear(tokens), torch.baddbmm(bias, batch1, batch2),
                self.msda(
                    query=query,
                    value=value,
                    reference_points=reference_points,
                    spatial_shapes=spatial_shapes,
                    level_start_index=level_start_index))


def _toy_inputs():
    generator = torch.Generator().manual_seed(0)
    shapes = [
        (BATCH, TOKENS, IN_DIMS),  # tokens
        (2, 3, 5),  # baddbmm bias
        (2, 3, 4),  # baddbmm batch1
        (2, 4, 5),  # baddbmm batch2
        (BATCH, NUM_QUERIES, EMBED),  # query
        (BATCH, NUM_VALUES, EMBED),  # value
        (BATCH, NUM_QUERIES, LEVELS, 2),  # reference points
    ]
    return tuple(torch.rand(shape, generator=generator) for shape in shapes)


def test_toy_counts_equal_hand_computation():
    analyzer = MaskFormerFlopAnalyzer(ToyModel().eval(), _toy_inputs())
    assert analyzer.papers_total() == PAPERS_TOTAL
    assert analyzer.sampling_total() == SAMPLING_FLOPS
    assert analyzer.total() == PAPERS_TOTAL + SAMPLING_FLOPS
    assert analyzer.papers_total('linear') == LINEAR_FLOPS
    assert analyzer.papers_total('msda') == MSDA_LINEAR_FLOPS
    assert analyzer.sampling_total('msda') == SAMPLING_FLOPS
    assert analyzer.by_operator()['baddbmm'] == BADDBMM_FLOPS


def test_handles_change_mmengine_count_by_exactly_their_parts():
    model, inputs = ToyModel().eval(), _toy_inputs()
    raw = FlopAnalyzer(model, inputs)
    raw.unsupported_ops_warnings(False)
    ours = MaskFormerFlopAnalyzer(model, inputs)
    # mmengine drops baddbmm and counts the grid samples at 4 per sample.
    raw_grid_sampler = BILINEAR_TAPS * SAMPLES
    assert raw.total() == PAPERS_TOTAL - BADDBMM_FLOPS + raw_grid_sampler
    assert 'aten::baddbmm' in raw.unsupported_ops()
    assert raw.by_operator()['grid_sampler'] == raw_grid_sampler
    assert ours.papers_total() - raw.total() == (
        BADDBMM_FLOPS - raw_grid_sampler)
    assert ours.total() - raw.total() == BADDBMM_FLOPS + SAMPLES
    assert 'aten::baddbmm' not in ours.unsupported_ops()


def test_cuda_function_path_counts_the_same(monkeypatch):
    """mmcv's CUDA path is one ``MultiScaleDeformableAttnFunction`` op."""
    pytorch_sampling = mmcv_msda.multi_scale_deformable_attn_pytorch

    def forward(ctx, value, spatial_shapes, level_start_index,
                sampling_locations, attention_weights, im2col_step):
        return pytorch_sampling(value, spatial_shapes, sampling_locations,
                                attention_weights)

    def sample_with_function(value, spatial_shapes, sampling_locations,
                             attention_weights):
        level_start_index = torch.tensor(LEVEL_START_INDEX)
        return mmcv_msda.MultiScaleDeformableAttnFunction.apply(
            value, spatial_shapes, level_start_index, sampling_locations,
            attention_weights, 64)

    monkeypatch.setattr(mmcv_msda.MultiScaleDeformableAttnFunction, 'forward',
                        staticmethod(forward))
    monkeypatch.setattr(mmcv_msda, 'multi_scale_deformable_attn_pytorch',
                        sample_with_function)
    analyzer = MaskFormerFlopAnalyzer(ToyModel().eval(), _toy_inputs())
    operators = analyzer.by_operator()
    assert 'grid_sampler' not in operators
    assert operators[MSDA_SAMPLING] == SAMPLING_FLOPS
    assert analyzer.papers_total() == PAPERS_TOTAL


@pytest.mark.skipif(not is_available(), reason='proscale._ext not built')
def test_fused_kernel_counts_the_same(monkeypatch):
    """The fused CPU kernel is one ``ms_deform_attn_points_forward``."""

    def no_pytorch_path(*args):
        raise AssertionError('the PyTorch path ran')

    monkeypatch.setattr(msda_ops, 'multi_scale_deformable_attn_pytorch',
                        no_pytorch_path)
    model = FusedMultiScaleDeformableAttention.convert(ToyModel().eval())
    with torch.no_grad():
        analyzer = MaskFormerFlopAnalyzer(model, _toy_inputs())
        graph = str(torch.jit.trace(model, _toy_inputs()).inlined_graph)
        operators = analyzer.by_operator()
    assert MSDA_FUSED_POINTS_OP in graph
    assert 'grid_sampler' not in operators
    assert operators[MSDA_SAMPLING] == SAMPLING_FLOPS
    assert analyzer.papers_total() == PAPERS_TOTAL


class SamplingModel(nn.Module):
    """The sampling alone, from locations and weights."""

    def forward(self, value, sampling_locations, attention_weights):
        return multi_scale_deformable_attn(value, torch.tensor(SPATIAL_SHAPES),
                                           torch.tensor(LEVEL_START_INDEX),
                                           sampling_locations,
                                           attention_weights)


@pytest.mark.skipif(not is_available(), reason='proscale._ext not built')
def test_fused_sampling_kernel_is_counted():
    inputs = (torch.rand(BATCH, NUM_VALUES, HEADS, HEAD_DIMS),
              torch.rand(BATCH, NUM_QUERIES, HEADS, LEVELS, POINTS, 2),
              torch.rand(BATCH, NUM_QUERIES, HEADS, LEVELS, POINTS))
    with torch.no_grad():
        graph = str(torch.jit.trace(SamplingModel(), inputs).inlined_graph)
        analyzer = MaskFormerFlopAnalyzer(SamplingModel(), inputs)
        assert MSDA_FUSED_OP in graph
        assert analyzer.sampling_total() == SAMPLING_FLOPS
        assert analyzer.papers_total() == 0


class GridSampleModel(nn.Module):

    def forward(self, image, grid):
        return F.grid_sample(image, grid, align_corners=False)


def test_grid_sample_outside_deformable_attention_keeps_mmengine_count():
    image, grid = torch.rand(1, 3, 4, 4), torch.rand(1, 2, 5, 2)
    analyzer = MaskFormerFlopAnalyzer(GridSampleModel(), (image, grid))
    assert analyzer.papers_total() == BILINEAR_TAPS * 3 * 2 * 5
    assert analyzer.sampling_total() == 0


def test_tiny_mask2former_handles_and_breakdown(tiny_baseline,
                                                tiny_baseline_flops):
    model, result = tiny_baseline, tiny_baseline_flops
    head = model.panoptic_head
    sampling = expected_msda_sampling(head.pixel_decoder, SHAPE)
    masked_attention = expected_masked_attention(head, SHAPE)
    assert result['msda_sampling'] * 1e9 == pytest.approx(sampling, rel=1e-9)

    # mmengine alone misses the masked attention and counts 4 of the 5
    # sampling FLOPs per sampled value (its grid_sampler handle, so on the
    # PyTorch path: it does not know the fused kernel).
    data = model.data_preprocessor(fixed_shape_batch(model, SHAPE), False)
    raw = FlopAnalyzer(
        TensorForward(model, data['data_samples']), (data['inputs'], ))
    raw.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad(), fused_ops(False):
        raw_total = raw.total()
    assert result['total'] * 1e9 - raw_total == pytest.approx(
        masked_attention - BILINEAR_TAPS * sampling / 5, rel=1e-9)

    with torch.no_grad():
        backbone = FlopAnalyzer(model.backbone, (data['inputs'], ))
        backbone.unsupported_ops_warnings(False)
        assert result['backbone'] * 1e9 == backbone.total()
    assert 0 < result['encoder'] and 0 < result['decoder']
    assert sum(result[k]
               for k in ('backbone', 'encoder', 'decoder')) == pytest.approx(
                   result['total'], rel=1e-12)
    assert result['params'] * 1e6 == sum(p.numel() for p in model.parameters())


@pytest.mark.skipif(not is_available(), reason='proscale._ext not built')
def test_fused_kernel_does_not_change_gflops(tiny_baseline,
                                             tiny_baseline_flops):
    with fused_ops(False):
        pytorch_path = count_flops(tiny_baseline,
                                   fixed_shape_batch(tiny_baseline, SHAPE))
    assert pytorch_path == tiny_baseline_flops


def test_average_flops_counts_every_image_alone(monkeypatch, tiny_baseline):
    """Batches are split into images; the mean stops after num_images."""
    counted_shapes = []

    def fake_count(model, data_batch):
        assert len(data_batch['inputs']) == 1
        height, width = data_batch['inputs'][0].shape[1:]
        counted_shapes.append((height, width))
        return dict(
            total=height * width,
            backbone=height,
            encoder=width,
            decoder=0.0,
            msda_sampling=1.0,
            params=3.0)

    monkeypatch.setattr(flop_count, 'count_flops', fake_count)
    square, wide = (
        fixed_shape_batch(tiny_baseline, shape)
        for shape in [(64, 64), (64, 96)])
    pair = dict(
        inputs=square['inputs'] * 2, data_samples=square['data_samples'] * 2)
    loader = [pair, wide, wide]
    result = average_flops(tiny_baseline, loader, num_images=3)
    assert counted_shapes == [(64, 64), (64, 64), (64, 96)]
    assert result['num_images'] == 3
    assert result['total'] == pytest.approx((2 * 64 * 64 + 64 * 96) / 3)
    assert result['encoder'] == pytest.approx((2 * 64 + 96) / 3)
    assert result['params'] * 1e6 == sum(p.numel()
                                         for p in tiny_baseline.parameters())

    counted_shapes.clear()
    assert average_flops(
        tiny_baseline, [wide], num_images=5)['num_images'] == 1
    with pytest.raises(ValueError, match='no images'):
        average_flops(tiny_baseline, [], num_images=5)
    with pytest.raises(ValueError, match='positive'):
        average_flops(tiny_baseline, loader, num_images=0)


def test_models_without_pixel_decoder_are_rejected():
    with pytest.raises(ValueError, match='has no pixel decoder'):
        count_flops(ToyModel(), dict(inputs=[], data_samples=[]))
    with pytest.raises(ValueError, match='has no pixel decoder'):
        get_pixel_decoder(nn.Module())
