# Copyright (c) The proscale Authors. All rights reserved.
"""The PRO-SCALE encoder of DINO / Deformable DETR against mmdet's."""
import pytest
import torch
from mmdet.models.layers import DeformableDetrTransformerEncoder
from mmdet.registry import MODELS

from proscale.models.layers import (ProScaleDetrTransformerEncoder,
                                    reverse_attention_levels)

EMBED_DIMS = 32
NUM_HEADS = 4
NUM_LEVELS = 4
NUM_POINTS = 2
# Odd sizes, fine to coarse as the detectors give them (1/8 ... 1/64).
SPATIAL_SHAPES = ((13, 21), (7, 11), (4, 6), (2, 3))
LAYER_CFG = dict(
    self_attn_cfg=dict(
        embed_dims=EMBED_DIMS,
        num_heads=NUM_HEADS,
        num_levels=NUM_LEVELS,
        num_points=NUM_POINTS,
        dropout=0.0),
    ffn_cfg=dict(
        embed_dims=EMBED_DIMS, feedforward_channels=64, ffn_drop=0.0))


def _inputs(batch_size=2, padded=False, seed=0):
    """Encoder inputs as mmdet's ``DeformableDETR.pre_transformer`` gives
    them (fine to coarse)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(SPATIAL_SHAPES)
    num_tokens = int(shapes.prod(1).sum())
    mask = None
    valid_ratios = torch.ones(batch_size, NUM_LEVELS, 2)
    if padded:
        # The second image covers the left 2/3 and the top 3/4 of the batch.
        masks = []
        for h, w in SPATIAL_SHAPES:
            level = torch.zeros(batch_size, h, w, dtype=torch.bool)
            level[1, (3 * h + 3) // 4:] = True
            level[1, :, (2 * w + 2) // 3:] = True
            masks.append(level.flatten(1))
        mask = torch.cat(masks, dim=1)
        valid_ratios[1, :, 0] = torch.tensor([(2 * w + 2) // 3 / w
                                              for _, w in SPATIAL_SHAPES])
        valid_ratios[1, :, 1] = torch.tensor([(3 * h + 3) // 4 / h
                                              for h, _ in SPATIAL_SHAPES])
    return dict(
        query=torch.randn(
            batch_size, num_tokens, EMBED_DIMS, generator=generator),
        query_pos=torch.randn(
            batch_size, num_tokens, EMBED_DIMS, generator=generator),
        key_padding_mask=mask,
        spatial_shapes=shapes,
        level_start_index=torch.cat(
            (shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1])),
        valid_ratios=valid_ratios)


def _build(num_layers_per_stage=(1, 1, 2, 2), **kwargs):
    torch.manual_seed(0)
    encoder = MODELS.build(
        dict(
            type='ProScaleDetrTransformerEncoder',
            num_layers_per_stage=num_layers_per_stage,
            layer_cfg=LAYER_CFG,
            **kwargs))
    for param in encoder.parameters():
        torch.nn.init.normal_(param, std=0.2)
    return encoder.eval()


@pytest.mark.parametrize('padded', [False, True])
def test_one_stage_without_trc_equals_mmdet_encoder(padded):
    torch.manual_seed(0)
    mmdet_encoder = DeformableDetrTransformerEncoder(
        num_layers=3, layer_cfg=LAYER_CFG).eval()
    for param in mmdet_encoder.parameters():
        torch.nn.init.normal_(param, std=0.3)
    encoder = ProScaleDetrTransformerEncoder(
        num_layers_per_stage=(0, 0, 0, 3), layer_cfg=LAYER_CFG).eval()
    encoder.load_state_dict(
        reverse_attention_levels(mmdet_encoder.state_dict(), NUM_HEADS,
                                 NUM_LEVELS, NUM_POINTS))
    inputs = _inputs(padded=padded)
    with torch.no_grad():
        expected = mmdet_encoder(**inputs)
        memory = encoder(**inputs)
    # Same function; only the order of the sum over levels differs.
    assert torch.allclose(memory, expected, atol=1e-5, rtol=0)
    assert (memory - expected).abs().max() < 1e-5 * expected.abs().max()
    # The level order matters: mmdet's weights as they are differ.
    encoder.load_state_dict(mmdet_encoder.state_dict())
    with torch.no_grad():
        assert not torch.allclose(encoder(**inputs), expected, atol=1e-3)


def test_reverse_attention_levels_is_an_involution():
    state_dict = _build((0, 0, 1, 1)).state_dict()
    twice = reverse_attention_levels(
        reverse_attention_levels(state_dict, NUM_HEADS, NUM_LEVELS,
                                 NUM_POINTS), NUM_HEADS, NUM_LEVELS,
        NUM_POINTS)
    for key, value in state_dict.items():
        assert torch.equal(twice[key], value)
    once = reverse_attention_levels(state_dict, NUM_HEADS, NUM_LEVELS,
                                    NUM_POINTS)
    # Only the 4-level layer (layers.1) is converted.
    changed = {
        key
        for key in state_dict if not torch.equal(once[key], state_dict[key])
    }
    assert changed == {
        f'layers.1.self_attn.{name}.{param}'
        for name in ('sampling_offsets', 'attention_weights')
        for param in ('weight', 'bias')
    }


@pytest.mark.parametrize('trc', [
    None,
    dict(type='linear', temperature=0.1, layout='legacy'),
    dict(type='conv', temperature=0.5, layout='spatial'),
])
@pytest.mark.parametrize('padded', [False, True])
def test_odd_sizes_keep_the_output_contract(trc, padded):
    encoder = _build(trc=trc)
    inputs = _inputs(padded=padded)
    with torch.no_grad():
        memory = encoder(**inputs)
    assert memory.shape == inputs['query'].shape
    assert torch.isfinite(memory).all()
    assert encoder.layer_levels == [1, 2, 3, 3, 4, 4]


def test_levels_come_back_in_input_order():
    """Before any layer (exit 0) the memory is the input, level by level,
    with only the coarser levels gated by TRC."""
    inputs = _inputs()
    sizes = torch.tensor(SPATIAL_SHAPES).prod(1).tolist()
    with torch.no_grad():
        assert torch.equal(
            _build(trc=None)(**inputs, exit_layer=0), inputs['query'])
        gated = _build(
            trc=dict(type='linear', layout='spatial'))(**inputs, exit_layer=0)
    finest = sizes[0]
    assert torch.equal(gated[:, :finest], inputs['query'][:, :finest])
    assert not torch.equal(gated[:, finest:], inputs['query'][:, finest:])
    # A stage-1 exit encodes only the coarsest (last) level.
    with torch.no_grad():
        memory = _build(trc=None)(**inputs, exit_layer=1)
    coarsest = sum(sizes[:-1])
    assert torch.equal(memory[:, :coarsest], inputs['query'][:, :coarsest])
    assert not torch.equal(memory[:, coarsest:], inputs['query'][:, coarsest:])


def test_forward_exits_equal_forward_at_each_exit():
    encoder = _build(trc=dict(type='linear', layout='legacy'))
    inputs = _inputs(padded=True)
    with torch.no_grad():
        exits = dict(encoder.forward_exits(exits=(2, 4, 6), **inputs))
        assert list(exits) == [2, 4, 6]
        for k, memory in exits.items():
            assert torch.equal(memory, encoder(**inputs, exit_layer=k))


def test_gradient_reaches_every_parameter():
    encoder = _build(trc=dict(type='linear', layout='spatial')).train()
    encoder(**_inputs()).square().mean().backward()
    missing = [
        name for name, param in encoder.named_parameters()
        if param.grad is None or not param.grad.abs().sum() > 0
    ]
    assert not missing


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_layers_per_stage=(2, 2, 2)), 'one non-negative int per'),
    (dict(num_layers_per_stage=(1, 1, -1, 2)), 'one non-negative int per'),
    (dict(num_layers_per_stage=(1, 1, 2, 2), num_layers=5), 'contradicts'),
    (dict(num_layers_per_stage=(1, 1, 2, 2), trc=dict(tau=1)), 'tau'),
])
def test_bad_options_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProScaleDetrTransformerEncoder(layer_cfg=LAYER_CFG, **kwargs)
