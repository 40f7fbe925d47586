# Copyright (c) The proscale Authors. All rights reserved.
import copy
import os.path as osp

import pytest
import torch
from mmcv.cnn.bricks.transformer import MultiScaleDeformableAttention
from mmdet.models.layers import MSDeformAttnPixelDecoder
from mmdet.registry import MODELS
from mmengine.config import Config, ConfigDict

from proscale.models.pixel_decoders import (
    EarlyExitMSDeformAttnPixelDecoder, ProScalePixelDecoder)

IN_CHANNELS = [8, 16, 24, 32]
STRIDES = [4, 8, 16, 32]
EMBED_DIMS = 32


def _common_args(num_layers=None):
    """Tiny mmdet ``MSDeformAttnPixelDecoder`` arguments."""
    return dict(
        in_channels=IN_CHANNELS,
        strides=STRIDES,
        feat_channels=EMBED_DIMS,
        out_channels=EMBED_DIMS,
        num_outs=3,
        norm_cfg=dict(type='GN', num_groups=8),
        act_cfg=dict(type='ReLU'),
        encoder=ConfigDict(
            num_layers=num_layers,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=EMBED_DIMS,
                    num_heads=4,
                    num_levels=3,
                    num_points=2,
                    dropout=0.0,
                    batch_first=True),
                ffn_cfg=dict(
                    embed_dims=EMBED_DIMS,
                    feedforward_channels=64,
                    num_fcs=2,
                    ffn_drop=0.0,
                    act_cfg=dict(type='ReLU', inplace=True)))),
        positional_encoding=dict(num_feats=EMBED_DIMS // 2, normalize=True))


def _build(**kwargs):
    """Build an initialized ProScalePixelDecoder through the registry."""
    args = _common_args()
    args.update(kwargs)
    decoder = MODELS.build(dict(type='ProScalePixelDecoder', **args))
    decoder.init_weights()
    return decoder.eval()


def _feats(height=97, width=131, batch_size=2, seed=0):
    """Backbone-like features of an image of the given size."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(
            batch_size,
            channels,
            -(-height // stride),
            -(-width // stride),
            generator=generator)
        for channels, stride in zip(IN_CHANNELS, STRIDES)
    ]


def _mmdet_baseline(num_layers=6):
    torch.manual_seed(0)
    baseline = MSDeformAttnPixelDecoder(**_common_args(num_layers))
    baseline.init_weights()
    return baseline.eval()


@pytest.mark.parametrize('options, size', [
    (dict(), (97, 131)),
    (dict(), (64, 64)),
    (dict(
        num_layers_per_stage=(1, 1, 4),
        trc=dict(type='conv', temperature=0.5, layout='spatial')), (97, 131)),
    (dict(
        num_layers_per_stage=(0, 0, 2),
        trc=None,
        pixel_embed='conv',
        residual=True), (97, 131)),
    (dict(num_layers_per_stage=(2, 0, 1), residual=True), (33, 200)),
    (dict(num_layers_per_stage=(0, 0, 0)), (97, 131)),
])
def test_output_shapes(options, size):
    decoder = _build(**options)
    feats = _feats(*size, batch_size=1)
    with torch.no_grad():
        mask_feature, multi_scale = decoder(feats)
    assert mask_feature.shape == (1, EMBED_DIMS) + feats[0].shape[-2:]
    assert [tuple(x.shape) for x in multi_scale] == [
        (1, EMBED_DIMS) + tuple(feats[i].shape[-2:]) for i in (3, 2, 1)
    ]


@pytest.mark.parametrize('options', [
    dict(num_layers_per_stage=(1, 1, 1), residual=True),
    dict(
        num_layers_per_stage=(1, 1, 1),
        trc=dict(type='conv', temperature=0.1, layout='spatial')),
])
def test_gradient_reaches_every_parameter(options):
    decoder = _build(**options).train()
    # MultiScaleDeformableAttention initializes its sampling-offset and
    # attention-weight projections to zero, which blocks the gradient of the
    # position and level embeddings at initialization.
    for module in decoder.modules():
        if isinstance(module, MultiScaleDeformableAttention):
            torch.nn.init.normal_(module.sampling_offsets.weight, std=0.01)
            torch.nn.init.normal_(module.attention_weights.weight, std=0.01)
    mask_feature, multi_scale = decoder(_feats(64, 96, batch_size=1))
    generator = torch.Generator().manual_seed(1)
    loss = sum((x * torch.randn(x.shape, generator=generator)).sum()
               for x in [mask_feature] + multi_scale)
    loss.backward()
    for name, param in decoder.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_baseline_schedule_matches_mmdet():
    baseline = _mmdet_baseline()
    decoder = _build(
        num_layers_per_stage=(0, 0, 6), trc=None, pixel_embed='conv')
    assert list(decoder.state_dict()) == list(baseline.state_dict())
    decoder.load_state_dict(baseline.state_dict())
    early_exit = EarlyExitMSDeformAttnPixelDecoder(**_common_args(6)).eval()
    early_exit.load_state_dict(baseline.state_dict())
    feats = _feats(65, 97, batch_size=1)
    with torch.no_grad():
        expected = baseline(feats)
        for model in (decoder, early_exit):
            mask_feature, multi_scale = model(feats)
            assert (mask_feature - expected[0]).abs().max() < 1e-5
            for out, ref in zip(multi_scale, expected[1]):
                assert (out - ref).abs().max() < 1e-5
        _, mask_feature, _ = next(early_exit.forward_exits(feats, [6]))
    assert (mask_feature - expected[0]).abs().max() < 1e-5


def test_proscale_differs_from_baseline_schedule():
    feats = _feats(64, 64)
    torch.manual_seed(0)
    proscale = _build(num_layers_per_stage=(0, 2, 4), trc=None)
    torch.manual_seed(0)
    baseline = _build(num_layers_per_stage=(0, 0, 6), trc=None)
    with torch.no_grad():
        baseline.encoder.layers[2:].load_state_dict(
            proscale.encoder.layers[2:].state_dict())
    assert [layer.self_attn.num_levels
            for layer in proscale.encoder.layers] == [2, 2, 3, 3, 3, 3]
    with torch.no_grad():
        assert not torch.allclose(proscale(feats)[0], baseline(feats)[0])


def test_default_exit_layers():
    assert _build().exit_layers == (7, 8, 9)
    assert _build(num_layers_per_stage=(1, 1, 4)).exit_layers == (3, 4, 5, 6)
    assert _build(num_layers_per_stage=(2, 2, 0)).exit_layers == (4, )
    assert _build(num_layers_per_stage=(0, 0, 0)).exit_layers == (0, )
    assert _build(exit_layers=[9, 3, 3]).exit_layers == (3, 9)
    early_exit = EarlyExitMSDeformAttnPixelDecoder(**_common_args(6))
    assert early_exit.num_layers == 6
    assert early_exit.exit_layers == (2, 3, 4, 5, 6)
    assert early_exit.num_layers_per_stage == (0, 0, 6)


def test_forward_exits_equal_forward_with_exit_layer():
    decoder = _build(
        num_layers_per_stage=(1, 1, 2),
        residual=True,
        exit_layers=(0, 1, 2, 3, 4))
    feats = _feats(64, 96, batch_size=1)
    with torch.no_grad():
        yielded = list(decoder.forward_exits(feats, [4, 1, 0, 3]))
        assert [k for k, _, _ in yielded] == [0, 1, 3, 4]
        outputs = []
        for k, mask_feature, multi_scale in yielded:
            decoder.exit_layer = k
            expected_mask, expected_multi_scale = decoder(feats)
            assert torch.equal(mask_feature, expected_mask)
            for out, ref in zip(multi_scale, expected_multi_scale):
                assert torch.equal(out, ref)
            outputs.append(torch.cat([x.flatten() for x in multi_scale]))
        decoder.exit_layer = None
        assert torch.equal(decoder(feats)[0], yielded[-1][1])
        assert [k for k, _, _ in decoder.forward_exits(feats)
                ] == [0, 1, 2, 3, 4]
    for earlier, later in zip(outputs, outputs[1:]):
        assert not torch.allclose(earlier, later)


def test_exit_before_last_stage_appends_input_tokens():
    decoder = _build(
        num_layers_per_stage=(1, 1, 1), trc=None, exit_layers=(0, 1, 3))
    feats = _feats(64, 64, batch_size=1)
    projected = decoder.input_convs[2](feats[1])
    with torch.no_grad():
        _, _, stage1_exit = next(decoder.forward_exits(feats, [1]))
        _, _, no_encoder = next(decoder.forward_exits(feats, [0]))
    assert torch.equal(stage1_exit[2], projected)
    assert torch.equal(no_encoder[0], decoder.input_convs[0](feats[3]))
    assert not torch.allclose(stage1_exit[0], no_encoder[0])


def test_skipped_layers_are_not_run():
    decoder = _build(num_layers_per_stage=(1, 1, 3), exit_layers=(2, 3, 4, 5))
    calls = [0] * decoder.num_layers

    def count(index):

        def hook(module, args, output):
            calls[index] += 1

        return hook

    for index, layer in enumerate(decoder.encoder.layers):
        layer.register_forward_hook(count(index))
    feats = _feats(32, 32, batch_size=1)
    with torch.no_grad():
        decoder.exit_layer = 3
        decoder(feats)
        assert calls == [1, 1, 1, 0, 0]
        list(decoder.forward_exits(feats, (2, 4)))
        assert calls == [2, 2, 2, 1, 0]


@pytest.mark.parametrize('done', [1, 2, 3])
def test_forward_exits_resume_after_the_first_layers(done):
    decoder = _build(
        num_layers_per_stage=(1, 2, 2),
        residual=True,
        exit_layers=(0, 1, 2, 3, 4, 5))
    calls = []
    for layer in decoder.encoder.layers:
        layer.register_forward_hook(lambda *args: calls.append(1))
    feats = _feats(64, 96, batch_size=2)
    with torch.no_grad():
        exits = [k for k in (1, 2, 3, 5) if k >= done]
        expected = list(decoder.forward_exits(feats, exits))
        tokens = decoder.encode_layers(feats, done)
        calls.clear()
        resumed = list(
            decoder.forward_exits(feats, exits, resume=(done, tokens)))
        # the first ``done`` layers are not run again
        assert len(calls) == 5 - done
        assert [k for k, _, _ in resumed] == exits
        for (_, mask, multi), (_, ref_mask, ref_multi) in zip(
                resumed, expected):
            assert torch.equal(mask, ref_mask)
            for out, ref in zip(multi, ref_multi):
                assert torch.equal(out, ref)
        # the gate input pools the encoded tokens of each scale
        pooled = decoder.gate_features(feats, num_levels=3, encoded=tokens)
        sizes = [f.shape[-2] * f.shape[-1] for f in feats[:0:-1]]
        for i, level in enumerate(tokens.split(sizes, dim=1)):
            torch.testing.assert_close(
                pooled[:, i * EMBED_DIMS:(i + 1) * EMBED_DIMS],
                level.mean(dim=1))


def test_gate_features():
    decoder = _build()
    feats = _feats(batch_size=3)
    with torch.no_grad():
        pooled = decoder.gate_features(feats)
        expected = decoder.input_convs[0](feats[3]).mean(dim=(2, 3))
    assert pooled.shape == (3, EMBED_DIMS)
    assert torch.equal(pooled, expected)


def test_multi_scale_gate_features_pool_every_scale():
    decoder = _build()
    feats = _feats(height=64, width=64, batch_size=2)
    shapes = torch.tensor([[64, 64], [40, 20]])
    with torch.no_grad():
        projected = decoder.project_inputs(feats)
        pooled = decoder.gate_features(feats, shapes, projected, 3)
        assert torch.equal(pooled[:, :EMBED_DIMS],
                           decoder.gate_features(feats, shapes))
    assert pooled.shape == (2, 3 * EMBED_DIMS)
    # image 1 covers ceil(40 / s) x ceil(20 / s) cells at stride s
    for i, (stride, cells) in enumerate(((32, (2, 1)), (16, (3, 2)),
                                         (8, (5, 3)))):
        expected = projected[i][1, :, :cells[0], :cells[1]].mean(dim=(1, 2))
        torch.testing.assert_close(
            pooled[1, i * EMBED_DIMS:(i + 1) * EMBED_DIMS], expected)
    with pytest.raises(ValueError, match='num_levels=4'):
        decoder.gate_features(feats, num_levels=4)


def test_early_exit_baseline_exits():
    early_exit = EarlyExitMSDeformAttnPixelDecoder(**_common_args(3))
    early_exit.init_weights()
    feats = _feats(32, 64)
    with torch.no_grad():
        early_exit.exit_layer = 2
        shallow = early_exit(feats)[0]
        early_exit.exit_layer = 3
        deep = early_exit(feats)[0]
    assert not torch.allclose(shallow, deep)
    with pytest.raises(ValueError, match='1'):
        early_exit.exit_layer = 1


@pytest.mark.parametrize('options, match', [
    (dict(num_layers_per_stage=(3, -1, 3)), r'\(3, -1, 3\)'),
    (dict(num_layers_per_stage=(3, 3)), r'\(3, 3\)'),
    (dict(num_layers_per_stage=(3, 3, 3, 3)), r'\(3, 3, 3, 3\)'),
    (dict(num_layers_per_stage=(3, 3.0, 3)), r'3\.0'),
    (dict(num_layers_per_stage='333'), '333'),
    (dict(trc=dict(type='mlp')), 'mlp'),
    (dict(trc=dict(layout='transposed')), 'transposed'),
    (dict(trc=dict(temperature=0)), 'temperature'),
    (dict(trc=dict(tau=0.1)), 'tau'),
    (dict(pixel_embed='avgpool'), 'avgpool'),
    (dict(residual='yes'), 'yes'),
    (dict(exit_layers=(10, )), '10'),
    (dict(exit_layers=(-1, 9)), '-1'),
    (dict(exit_layers=()), 'exit_layers'),
    (dict(encoder=None), 'encoder'),
])
def test_invalid_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        _build(**options)


def test_inherited_encoder_depth_must_agree():
    encoder = copy.deepcopy(_common_args()['encoder'])
    encoder.num_layers = 6
    with pytest.raises(ValueError, match='encoder.num_layers=6'):
        _build(encoder=encoder)
    encoder.num_layers = 9
    assert _build(encoder=encoder).num_layers == 9


def test_invalid_exit_requests_raise():
    decoder = _build()
    with pytest.raises(ValueError, match='6'):
        decoder.exit_layer = 6
    with pytest.raises(ValueError, match='4'):
        decoder.forward_exits(_feats(), [4, 9])


def test_usable_in_mmseg_mask2former_head():
    import mmseg
    import mmseg.models  # noqa: F401
    from mmseg.registry import MODELS as MMSEG_MODELS
    cfg = Config.fromfile(
        osp.join(
            osp.dirname(mmseg.__file__), '.mim', 'configs', 'mask2former',
            'mask2former_r50_8xb2-90k_cityscapes-512x1024.py'))
    prefix = 'model.decode_head.pixel_decoder.'
    cfg.merge_from_dict({
        prefix + 'type': 'mmdet.ProScalePixelDecoder',
        prefix + 'num_layers_per_stage': (1, 1, 4),
        prefix + 'encoder.num_layers': None
    })
    head = MMSEG_MODELS.build(cfg.model.decode_head)
    assert type(head.pixel_decoder) is ProScalePixelDecoder
    assert head.pixel_decoder.num_layers == 6
    assert MODELS.get('ProScalePixelDecoder') is ProScalePixelDecoder
