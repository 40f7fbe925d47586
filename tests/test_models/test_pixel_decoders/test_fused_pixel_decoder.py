# Copyright (c) The proscale Authors. All rights reserved.
"""Every encoder of the project runs the fused kernel and equals its
PyTorch path (and mmdet's baseline)."""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.registry import MODELS
from test_proscale_pixel_decoder import _common_args, _feats, _mmdet_baseline

from proscale.models.layers import FusedMultiScaleDeformableAttention
from proscale.ops import fused_ops, is_available

requires_ext = pytest.mark.skipif(
    not is_available(), reason='proscale._ext (the C++ ops) was not built')
ATOL = 1e-5
DECODERS = {
    'baseline':
    dict(type='FusedMSDeformAttnPixelDecoder', **_common_args(6)),
    'early exit':
    dict(type='EarlyExitMSDeformAttnPixelDecoder', **_common_args(6)),
    'PRO-SCALE (3,3,3)':
    dict(type='ProScalePixelDecoder', **_common_args()),
    'PRO-SCALE (1,1,4) residual':
    dict(
        type='ProScalePixelDecoder',
        num_layers_per_stage=(1, 1, 4),
        residual=True,
        **_common_args()),
}


def _build(cfg):
    torch.manual_seed(0)
    decoder = MODELS.build(cfg)
    decoder.init_weights()
    # Non-trivial sampling offsets and attention weights.
    for module in decoder.modules():
        if isinstance(module, MultiScaleDeformableAttention):
            torch.nn.init.normal_(module.sampling_offsets.bias, std=2.0)
            torch.nn.init.normal_(module.attention_weights.weight, std=0.2)
    return decoder.eval()


def _assert_outputs_close(actual, expected):
    (mask, features), (expected_mask, expected_features) = actual, expected
    torch.testing.assert_close(mask, expected_mask, rtol=0, atol=ATOL)
    for feature, expected_feature in zip(features, expected_features):
        torch.testing.assert_close(
            feature, expected_feature, rtol=0, atol=ATOL)


@pytest.mark.parametrize('cfg', DECODERS.values(), ids=DECODERS.keys())
def test_every_encoder_uses_the_fused_attention(cfg):
    decoder = MODELS.build(cfg)
    attentions = [
        m for m in decoder.modules()
        if isinstance(m, MultiScaleDeformableAttention)
    ]
    assert attentions
    assert all(
        type(m) is FusedMultiScaleDeformableAttention for m in attentions)


@requires_ext
@pytest.mark.parametrize('cfg', DECODERS.values(), ids=DECODERS.keys())
def test_fused_equals_pytorch_path(cfg):
    decoder = _build(cfg)
    feats = _feats(height=97, width=131, batch_size=2)
    with torch.no_grad():
        fused = decoder(feats)
        with fused_ops(False):
            pytorch_path = decoder(feats)
    _assert_outputs_close(fused, pytorch_path)


@requires_ext
def test_fused_baseline_equals_mmdet_decoder():
    baseline = _mmdet_baseline(6)
    decoder = _build(DECODERS['baseline'])
    decoder.load_state_dict(baseline.state_dict())
    feats = _feats(height=65, width=95, batch_size=2)
    with torch.no_grad():
        _assert_outputs_close(decoder(feats), baseline(feats))


@requires_ext
def test_early_exits_equal_pytorch_path():
    decoder = _build(DECODERS['early exit'])
    feats = _feats(height=64, width=96, batch_size=1)
    with torch.no_grad():
        fused = [out[1:] for out in decoder.forward_exits(feats)]
        with fused_ops(False):
            pytorch_path = [out[1:] for out in decoder.forward_exits(feats)]
    assert len(fused) == len(pytorch_path) == 5
    for actual, expected in zip(fused, pytorch_path):
        _assert_outputs_close(actual, expected)
