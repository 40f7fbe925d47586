# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
import torch.nn.functional as F

from proscale.models.layers import (LightPixelEmbedding, TokenRecalibration,
                                    build_token_recalibration)

CHANNELS = 8
FINE_HW = (16, 24)
COARSE_HW = (4, 6)


def _tokens(hw, batch_size=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(
        batch_size, hw[0] * hw[1], CHANNELS, generator=generator)


def _trc(proj_type, layout, temperature=0.5):
    torch.manual_seed(0)
    trc = TokenRecalibration(
        embed_dims=CHANNELS,
        proj_type=proj_type,
        temperature=temperature,
        layout=layout)
    with torch.no_grad():
        trc.proj.bias.fill_(0.3)
    return trc


@pytest.mark.parametrize('proj_type', ['linear', 'conv'])
def test_spatial_gates_from_colocated_fine_tokens(proj_type):
    trc = _trc(proj_type, 'spatial')
    coarse = torch.ones(1, COARSE_HW[0] * COARSE_HW[1], CHANNELS)
    fine_map = torch.zeros(1, CHANNELS, *FINE_HW)
    # Fine rows 12-15 and columns 8-11 lie under coarse cell (3, 2).
    fine_map[:, :, 12:16, 8:12] = torch.rand(CHANNELS, 4, 4) + 1
    fine = fine_map.flatten(2).transpose(1, 2)
    with torch.no_grad():
        gated = trc(coarse, COARSE_HW, fine, FINE_HW)
        reference = trc(coarse, COARSE_HW, torch.zeros_like(fine), FINE_HW)
    changed = (gated - reference).abs().amax(dim=-1)[0]
    expected = torch.zeros(COARSE_HW[0] * COARSE_HW[1], dtype=torch.bool)
    expected[3 * COARSE_HW[1] + 2] = True
    assert torch.equal(changed > 0, expected)
    # Without fine activity every token gets the bias-only gate.
    assert torch.allclose(reference, torch.sigmoid(torch.tensor(0.5 * 0.3)))


def test_spatial_linear_and_conv_compute_the_same_gate():
    linear = _trc('linear', 'spatial')
    conv = _trc('conv', 'spatial')
    with torch.no_grad():
        conv.proj.weight.copy_(linear.proj.weight.view(1, CHANNELS, 1, 1))
        coarse, fine = _tokens(COARSE_HW), _tokens(FINE_HW, seed=1)
        assert torch.allclose(
            linear(coarse, COARSE_HW, fine, FINE_HW),
            conv(coarse, COARSE_HW, fine, FINE_HW),
            atol=1e-6)


def test_legacy_linear_follows_the_authors_reshape_rule():
    trc = _trc('linear', 'legacy')
    coarse, fine = _tokens(COARSE_HW), _tokens(FINE_HW, seed=1)
    batch_size, num_coarse, channels = coarse.shape
    # Raw reinterpretation of the (B, L, C) memory, no permutation.
    raw = fine.contiguous().view(batch_size, channels, *FINE_HW)
    resized = F.interpolate(
        raw, size=COARSE_HW, mode='bilinear', align_corners=False)
    resized = resized.reshape(batch_size, num_coarse, channels)
    logits = F.linear(resized, trc.proj.weight, trc.proj.bias)
    expected = coarse * torch.sigmoid(0.5 * logits)
    with torch.no_grad():
        gated = trc(coarse, COARSE_HW, fine, FINE_HW)
        spatial = _trc('linear', 'spatial')(coarse, COARSE_HW, fine, FINE_HW)
    assert torch.allclose(gated, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(gated, spatial)


def test_legacy_conv_follows_the_authors_reshape_rule():
    trc = _trc('conv', 'legacy')
    coarse, fine = _tokens(COARSE_HW), _tokens(FINE_HW, seed=1)
    batch_size, num_coarse, channels = coarse.shape
    raw_fine = fine.contiguous().view(batch_size, channels, *FINE_HW)
    raw_coarse = coarse.contiguous().view(batch_size, channels, *COARSE_HW)
    resized = F.interpolate(
        raw_fine, size=COARSE_HW, mode='bilinear', align_corners=False)
    gate = torch.sigmoid(0.5 *
                         F.conv2d(resized, trc.proj.weight, trc.proj.bias))
    expected = (raw_coarse * gate).reshape(batch_size, num_coarse, channels)
    with torch.no_grad():
        gated = trc(coarse, COARSE_HW, fine, FINE_HW)
    assert torch.allclose(gated, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize('options, match', [
    (dict(proj_type='mlp'), 'mlp'),
    (dict(layout='nchw'), 'nchw'),
    (dict(temperature=-1.0), '-1.0'),
    (dict(temperature='0.1'), '0.1'),
])
def test_invalid_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        TokenRecalibration(embed_dims=CHANNELS, **options)


def test_light_pixel_embedding():
    embed = LightPixelEmbedding(
        CHANNELS, norm_cfg=dict(type='GN', num_groups=4))
    x = torch.randn(2, CHANNELS, 9, 13)
    expected = F.relu(
        embed.norm(F.max_pool2d(x, kernel_size=3, stride=1, padding=1)))
    assert torch.equal(embed(x), expected)
    assert isinstance(embed.norm, torch.nn.GroupNorm)
    assert not any(p.dim() > 1 for p in embed.parameters())


@pytest.mark.parametrize('layout', ['legacy', 'spatial'])
def test_forward_scales_gates_every_coarser_scale_from_the_finest(layout):
    trc = _trc('linear', layout)
    hws = [(2, 3), COARSE_HW, FINE_HW]
    tokens = [_tokens(hw, seed=i) for i, hw in enumerate(hws)]
    with torch.no_grad():
        gated = trc.forward_scales(tokens, hws)
        expected = [trc(x, hw, tokens[-1], FINE_HW)
                    for x, hw in zip(tokens[:-1], hws[:-1])]
    assert len(gated) == 3
    for out, ref in zip(gated[:-1], expected):
        assert torch.equal(out, ref)
    assert gated[-1] is tokens[-1]


def test_build_token_recalibration_checks_its_options():
    assert build_token_recalibration(None, CHANNELS) is None
    trc = build_token_recalibration(
        dict(type='conv', temperature=0.5, layout='spatial'), CHANNELS)
    assert (trc.proj_type, trc.temperature, trc.layout) == ('conv', 0.5,
                                                            'spatial')
    with pytest.raises(ValueError, match='tau'):
        build_token_recalibration(dict(tau=0.1), CHANNELS)
    with pytest.raises(ValueError, match='must be a dict'):
        build_token_recalibration('linear', CHANNELS)
