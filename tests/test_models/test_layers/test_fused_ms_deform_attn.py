# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
import torch.nn as nn
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.registry import MODELS

from proscale.models.layers import FusedMultiScaleDeformableAttention
from proscale.ops import fused_ops, is_available

requires_ext = pytest.mark.skipif(
    not is_available(), reason='proscale._ext (the C++ ops) was not built')
EMBED_DIMS, NUM_LEVELS = 32, 3
SPATIAL_SHAPES = torch.tensor([[9, 7], [5, 4], [3, 2]])
LEVEL_START_INDEX = torch.tensor([0, 63, 83])
NUM_KEYS = 89


def _mmcv_attention(**kwargs):
    torch.manual_seed(0)
    attention = MultiScaleDeformableAttention(
        embed_dims=EMBED_DIMS,
        num_heads=4,
        num_levels=NUM_LEVELS,
        num_points=3,
        **kwargs)
    # Non-zero offsets and weights (mmcv initializes both to constants).
    for parameter in attention.parameters():
        nn.init.normal_(parameter, std=0.5)
    return attention.eval()


def _inputs(batch_first, box_references, batch_size=2, num_queries=11):
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(
        batch_size, num_queries, EMBED_DIMS, generator=generator)
    value = torch.randn(batch_size, NUM_KEYS, EMBED_DIMS, generator=generator)
    reference_points = torch.rand(
        batch_size,
        num_queries,
        NUM_LEVELS,
        4 if box_references else 2,
        generator=generator)
    key_padding_mask = torch.rand(
        batch_size, NUM_KEYS, generator=generator) < 0.3
    if not batch_first:
        query, value = query.transpose(0, 1), value.transpose(0, 1)
    return dict(
        query=query,
        value=value,
        query_pos=torch.randn(query.shape, generator=generator),
        key_padding_mask=key_padding_mask,
        reference_points=reference_points,
        spatial_shapes=SPATIAL_SHAPES,
        level_start_index=LEVEL_START_INDEX)


@requires_ext
@pytest.mark.parametrize('batch_first', [True, False])
@pytest.mark.parametrize('box_references', [False, True])
def test_equals_mmcv_attention(batch_first, box_references):
    mmcv_attention = _mmcv_attention(batch_first=batch_first)
    fused = MODELS.build(
        dict(
            type='FusedMultiScaleDeformableAttention',
            embed_dims=EMBED_DIMS,
            num_heads=4,
            num_levels=NUM_LEVELS,
            num_points=3,
            batch_first=batch_first)).eval()
    fused.load_state_dict(mmcv_attention.state_dict())
    inputs = _inputs(batch_first, box_references)
    with torch.no_grad():
        expected = mmcv_attention(**inputs)
        torch.testing.assert_close(
            fused(**inputs), expected, rtol=0, atol=1e-5)
        with fused_ops(False):
            assert torch.equal(fused(**inputs), expected)


def test_training_takes_mmcv_path_and_matches_gradients():
    mmcv_attention = _mmcv_attention(batch_first=True, dropout=0.0).train()
    fused = FusedMultiScaleDeformableAttention(
        dropout=0.0,
        embed_dims=EMBED_DIMS,
        num_heads=4,
        num_levels=NUM_LEVELS,
        num_points=3,
        batch_first=True)
    fused.load_state_dict(mmcv_attention.state_dict())
    inputs = _inputs(True, False)
    expected = mmcv_attention(**inputs)
    output = fused(**inputs)
    assert torch.equal(output, expected)
    expected.sum().backward()
    output.sum().backward()
    for (name, parameter), reference in zip(fused.named_parameters(),
                                            mmcv_attention.parameters()):
        assert torch.equal(parameter.grad, reference.grad), name


class _Model(nn.Module):

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([_mmcv_attention(batch_first=True)])
        self.block = nn.Sequential(
            nn.Linear(2, 2), _mmcv_attention(batch_first=True))


def test_convert_swaps_mmcv_attention_keeping_its_state():
    model = _Model()
    state = model.state_dict()
    parameters = list(model.parameters())
    rng = torch.get_rng_state()
    converted = FusedMultiScaleDeformableAttention.convert(model)
    assert torch.equal(torch.get_rng_state(), rng)  # nothing re-initialized
    assert converted is model
    assert type(model.layers[0]) is FusedMultiScaleDeformableAttention
    assert type(model.block[1]) is FusedMultiScaleDeformableAttention
    assert type(model.block[0]) is nn.Linear
    assert all(a is b for a, b in zip(model.parameters(), parameters))
    assert list(model.state_dict()) == list(state)
    # A converted module is left alone; a bare attention is returned new.
    assert FusedMultiScaleDeformableAttention.convert(
        model.layers[0]) is model.layers[0]
    attention = _mmcv_attention(batch_first=True)
    fused = FusedMultiScaleDeformableAttention.convert(attention)
    assert type(fused) is FusedMultiScaleDeformableAttention
    assert fused.value_proj is attention.value_proj
    assert not fused.training
