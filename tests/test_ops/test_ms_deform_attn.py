# Copyright (c) The proscale Authors. All rights reserved.
"""The fused deformable attention kernel equals mmcv's PyTorch path."""
import pytest
import torch
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch

import proscale.ops.ms_deform_attn as msda_module
from proscale.ops import (fused_ops, is_available, is_enabled,
                          multi_scale_deformable_attn,
                          multi_scale_deformable_attn_from_points)

requires_ext = pytest.mark.skipif(
    not is_available(), reason='proscale._ext (the C++ ops) was not built')
ATOL = 1e-5


def _inputs(shapes,
            batch_size=2,
            num_queries=13,
            num_heads=3,
            channels=5,
            num_points=4,
            dtype=torch.float32,
            seed=0):
    """Random inputs whose locations also hit centres, borders and beyond.

    A third of the locations are uniform in [-0.3, 1.3] (so some fall
    outside the map), a third are exactly on pixel centres ``(i + 0.5) / w``
    (including the centres of the pixels just outside the map) and a third
    exactly on borders and corners (0 and 1, in x, y or both).
    """
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    level_start_index = torch.cat(
        (spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
    num_levels = len(shapes)
    value = torch.randn(
        batch_size,
        int(spatial_shapes.prod(1).sum()),
        num_heads,
        channels,
        generator=generator,
        dtype=dtype)
    size = (batch_size, num_queries, num_heads, num_levels, num_points, 2)
    uniform = torch.rand(size, generator=generator, dtype=dtype) * 1.6 - 0.3
    wh = spatial_shapes.flip(-1).to(dtype)[None, None, None, :, None, :]
    pixel = torch.randint(-1, 2, size, generator=generator).to(dtype)
    pixel = pixel + (torch.rand(size, generator=generator, dtype=dtype) *
                     (wh + 1)).floor() - 1
    centres = (pixel + 0.5) / wh
    borders = torch.randint(0, 2, size, generator=generator).to(dtype)
    choice = torch.randint(0, 3, size[:-1] + (1, ), generator=generator)
    sampling_locations = torch.where(
        choice == 0, uniform, torch.where(choice == 1, centres, borders))
    attention_weights = torch.rand(
        size[:-1], generator=generator, dtype=dtype).softmax(-1)
    return (value, spatial_shapes, level_start_index, sampling_locations,
            attention_weights)


def _reference(value, spatial_shapes, level_start_index, sampling_locations,
               attention_weights):
    return multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                               sampling_locations,
                                               attention_weights)


SHAPES = {
    '1 level': [(7, 9)],
    '2 levels': [(8, 6), (3, 5)],
    '3 odd levels': [(25, 17), (13, 9), (7, 5)],
    '4 levels': [(16, 20), (8, 10), (4, 5), (2, 3)],
    'single pixel': [(1, 1), (1, 3), (3, 1)],
}


@requires_ext
@pytest.mark.parametrize('shapes', SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize('batch_size', [1, 3])
def test_fused_equals_pytorch_path(shapes, batch_size):
    inputs = _inputs(shapes, batch_size=batch_size)
    with torch.no_grad():
        fused = multi_scale_deformable_attn(*inputs)
        expected = _reference(*inputs)
    assert fused.shape == expected.shape == (batch_size, 13, 3 * 5)
    torch.testing.assert_close(fused, expected, rtol=0, atol=ATOL)
    # The inputs exercise the zero padding.
    assert (inputs[3] < 0).any() and (inputs[3] > 1).any()


@requires_ext
def test_fused_kernel_in_float64_and_mask2former_head_size():
    # 32 channels per head is the kernel's specialised case.
    inputs = _inputs([(9, 11), (5, 6)],
                     num_heads=2,
                     channels=32,
                     dtype=torch.float64)
    fused = torch.ops.proscale.ms_deform_attn_forward(*inputs)
    torch.testing.assert_close(fused, _reference(*inputs), rtol=0, atol=1e-12)
    inputs = _inputs([(9, 11), (5, 6)], num_heads=2, channels=32)
    torch.testing.assert_close(
        torch.ops.proscale.ms_deform_attn_forward(*inputs),
        _reference(*inputs),
        rtol=0,
        atol=ATOL)


@requires_ext
def test_fused_kernel_accepts_non_contiguous_inputs():
    value, shapes, starts, locations, weights = _inputs([(6, 7), (3, 4)])
    value_t = value.transpose(2, 3).contiguous().transpose(2, 3)
    locations_t = locations.transpose(1, 2).contiguous().transpose(1, 2)
    assert not value_t.is_contiguous() and not locations_t.is_contiguous()
    torch.testing.assert_close(
        torch.ops.proscale.ms_deform_attn_forward(value_t, shapes, starts,
                                                  locations_t, weights),
        _reference(value, shapes, starts, locations, weights),
        rtol=0,
        atol=ATOL)


@requires_ext
@pytest.mark.parametrize('index, bad, message', [
    (0, torch.zeros(2, 5, 3), 'value must be'),
    (4, torch.zeros(2, 13, 3, 2, 3), 'attention_weights must be'),
    (1, torch.tensor([[6, 7], [9, 9]]), 'outside the'),
    (0, torch.zeros(2, 54, 3, 5, dtype=torch.float64), 'same dtype'),
])
def test_fused_kernel_rejects_bad_inputs(index, bad, message):
    inputs = list(_inputs([(6, 7), (3, 4)]))
    inputs[index] = bad
    with pytest.raises(RuntimeError, match=message):
        torch.ops.proscale.ms_deform_attn_forward(*inputs)


def test_gradients_take_the_pytorch_path():
    inputs = list(_inputs([(6, 7), (3, 4)]))
    for i in (0, 3, 4):
        inputs[i].requires_grad_(True)
    out = multi_scale_deformable_attn(*inputs)
    expected = _reference(*inputs)
    assert torch.equal(out, expected)
    grads = torch.autograd.grad(out.sum(), [inputs[i] for i in (0, 3, 4)])
    expected_grads = torch.autograd.grad(expected.sum(),
                                         [inputs[i] for i in (0, 3, 4)])
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.equal(grad, expected_grad)


class _PathSpy:
    """Counts the calls of mmcv's PyTorch path made by the op."""

    def __init__(self, monkeypatch):
        self.calls = 0
        monkeypatch.setattr(msda_module, 'multi_scale_deformable_attn_pytorch',
                            self)

    def __call__(self, *args):
        self.calls += 1
        return multi_scale_deformable_attn_pytorch(*args)


@requires_ext
def test_switch_selects_the_path(monkeypatch):
    spy = _PathSpy(monkeypatch)
    inputs = _inputs([(6, 7)])
    assert is_enabled()
    with torch.no_grad():
        multi_scale_deformable_attn(*inputs)
        assert spy.calls == 0
        with fused_ops(False):
            assert not is_enabled()
            out = multi_scale_deformable_attn(*inputs)
        assert is_enabled()
        assert spy.calls == 1
        assert torch.equal(out, _reference(*inputs))
        multi_scale_deformable_attn(
            *(t.to(torch.float16) if t.is_floating_point() else t
              for t in inputs))
        assert spy.calls == 2


def test_fallback_without_extension_warns_once(monkeypatch):
    spy = _PathSpy(monkeypatch)
    warnings = []
    monkeypatch.setattr(msda_module, '_EXT_ERROR',
                        ImportError('no _ext for this test'))
    monkeypatch.setitem(msda_module._state, 'warned', False)
    monkeypatch.setattr(msda_module, 'print_log',
                        lambda msg, **kwargs: warnings.append(msg))
    assert not is_available()
    inputs = _inputs([(6, 7), (3, 4)])
    with torch.no_grad():
        for _ in range(2):
            assert torch.equal(
                multi_scale_deformable_attn(*inputs), _reference(*inputs))
    assert spy.calls == 2
    assert len(warnings) == 1 and 'no _ext for this test' in warnings[0]


def _point_inputs(shapes,
                  batch_size=2,
                  num_queries=13,
                  num_heads=3,
                  channels=32,
                  num_points=4,
                  seed=0):
    """Reference points, offsets (in pixels) and logits; the offsets put
    a third of the samples exactly on pixel centres (from a reference
    point at 0) and the rest anywhere, partly outside the map."""
    value, spatial_shapes, level_start_index, _, _ = _inputs(
        shapes,
        batch_size,
        num_queries,
        num_heads,
        channels,
        num_points,
        seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    num_levels = len(shapes)
    reference_points = torch.rand(
        batch_size, num_queries, num_levels, 2, generator=generator)
    reference_points[:, ::3] = 0
    size = (batch_size, num_queries, num_heads, num_levels, num_points, 2)
    offsets = torch.randn(size, generator=generator) * 3
    wh = spatial_shapes.flip(-1)[None, None, None, :, None, :]
    centres = torch.randint(-1, 100, size, generator=generator) % (wh + 2)
    offsets[:, ::3] = centres[:, ::3] - 0.5
    logits = torch.randn(
        batch_size,
        num_queries,
        num_heads,
        num_levels * num_points,
        generator=generator) * 3
    return (value, spatial_shapes, level_start_index, reference_points,
            offsets, logits)


@requires_ext
@pytest.mark.parametrize('shapes', SHAPES.values(), ids=SHAPES.keys())
def test_fused_from_points_equals_pytorch_path(shapes):
    inputs = _point_inputs(shapes)
    with torch.no_grad():
        fused = multi_scale_deformable_attn_from_points(*inputs)
        with fused_ops(False):
            expected = multi_scale_deformable_attn_from_points(*inputs)
    torch.testing.assert_close(fused, expected, rtol=0, atol=ATOL)


def test_from_points_pytorch_path_is_mmcv_computation():
    value, shapes, starts, reference_points, offsets, logits = \
        _point_inputs([(6, 7), (3, 4)], num_points=2)
    weights = logits.softmax(-1).view(offsets.shape[:-1])
    normalizer = torch.stack([shapes[..., 1], shapes[..., 0]], -1)
    locations = reference_points[:, :, None, :, None, :] \
        + offsets / normalizer[None, None, None, :, None, :]
    with fused_ops(False):
        assert torch.equal(
            multi_scale_deformable_attn_from_points(value, shapes, starts,
                                                    reference_points, offsets,
                                                    logits),
            _reference(value, shapes, starts, locations, weights))


@requires_ext
@pytest.mark.parametrize('index, bad, message', [
    (3, torch.zeros(2, 13, 3, 3), 'reference_points must be'),
    (4, torch.zeros(2, 13, 3, 2, 4), 'sampling_offsets must be'),
    (5, torch.zeros(2, 13, 3, 7), 'attention_logits must be'),
])
def test_fused_from_points_rejects_bad_inputs(index, bad, message):
    inputs = list(_point_inputs([(6, 7), (3, 4)]))
    inputs[index] = bad
    with pytest.raises(RuntimeError, match=message):
        torch.ops.proscale.ms_deform_attn_points_forward(*inputs)
