# Copyright (c) The proscale Authors. All rights reserved.
"""Converted tiny reference models reproduce the authors' outputs.

Every output the fixtures store is compared: backbone features, mask and
multi-scale features, class and mask logits of every decoder layer; for
ECO-M2F also the gate's logits, the chosen exit and all outputs at every
exit 2..6. The Mask2Former baseline is ECO-M2F's tiny model without its
gate, in mmdet's own ``Mask2Former``: it must give the outputs of exit 6
(all encoder layers).
"""
from collections import OrderedDict
from typing import Dict, Tuple

import pytest
import torch
from converter_helpers import (head_diffs, max_abs_diff, pixel_decoder_diffs,
                               tiny_cfg)
from mmdet.structures import DetDataSample

from proscale.converters import check_strict, convert_state_dict, recognize
from proscale.converters.checkpoint import build_model
from proscale.models.dense_heads.eco_mask2former_head import \
    PixelDecoderOutput

TOLERANCE = 1e-5  # measured: at most 3.0e-6 (float32, CPU)
PROSCALE_FIXTURES = ('tiny_swin_proscale.pth', 'tiny_r50style_proscale.pth')
ECO_FIXTURE = 'tiny_swin_eco-m2f.pth'


def convert_tiny(fixture: dict, kind: str,
                 drop_gate: bool = False) -> torch.nn.Module:
    """Convert a fixture's weights and load them strictly into its model."""
    state_dict = OrderedDict(fixture['model'])
    if drop_gate:
        state_dict = OrderedDict(
            (k, v) for k, v in state_dict.items() if '.gt.' not in k)
    arch = recognize({k: v.shape for k, v in state_dict.items()})
    new_state_dict, leftover = convert_state_dict(state_dict, arch)
    model = build_model(tiny_cfg(fixture['settings'], arch, kind))
    check_strict(model, new_state_dict, leftover)
    return model.eval()


def network_input(model: torch.nn.Module,
                  fixture: dict) -> Tuple[torch.Tensor, float]:
    """mmdet's preprocessing of the fixture image (loaded as BGR) and its
    difference from the authors' padded input."""
    image_bgr = fixture['inputs']['image_rgb_uint8'].flip(0)
    data = model.data_preprocessor(
        dict(inputs=[image_bgr], data_samples=[DetDataSample()]), False)
    inputs = data['inputs']
    return inputs, max_abs_diff(inputs, fixture['inputs']['image_padded'])


def backbone_diffs(feats, reference: dict) -> Dict[str, float]:
    return {
        f'backbone.res{i + 2}': max_abs_diff(feat, reference[f'res{i + 2}'])
        for i, feat in enumerate(feats)
    }


def assert_close(diffs: Dict[str, float]) -> None:
    worst = {k: v for k, v in diffs.items() if not v <= TOLERANCE}
    assert not worst, f'outputs differ by more than {TOLERANCE}: {worst}'


@pytest.mark.parametrize('name', PROSCALE_FIXTURES)
def test_proscale_reproduces_reference(name, load_fixture, single_thread):
    fixture = load_fixture(name)
    outputs = fixture['outputs']
    model = convert_tiny(fixture, 'proscale')
    assert model.panoptic_head.pixel_decoder.trc.layout == 'legacy'
    with torch.no_grad():
        inputs, input_diff = network_input(model, fixture)
        feats = model.backbone(inputs)
        mask_feature, multi_scale = model.panoptic_head.pixel_decoder(feats)
        cls_preds, mask_preds = model.panoptic_head(feats, [])
    diffs = {'input': input_diff}
    diffs.update(backbone_diffs(feats, outputs['backbone']))
    diffs.update(
        pixel_decoder_diffs(mask_feature, multi_scale,
                            outputs['pixel_decoder'], ''))
    diffs.update(head_diffs(cls_preds, mask_preds, outputs['predictor'], ''))
    assert len(cls_preds) == 4
    assert_close(diffs)


def test_eco_m2f_reproduces_reference(load_fixture, single_thread):
    fixture = load_fixture(ECO_FIXTURE)
    outputs = fixture['outputs']
    model = convert_tiny(fixture, 'eco')
    pixel_decoder = model.panoptic_head.pixel_decoder
    assert model.gate.exits == tuple(outputs['gate']['exits'])
    with torch.no_grad():
        inputs, input_diff = network_input(model, fixture)
        feats = model.backbone(inputs)
        # the authors' gate reads the projected 1/32 tokens, then pools
        tokens = pixel_decoder.input_convs[0](feats[-1]).flatten(2)
        gate_input = pixel_decoder.gate_features(feats)
        gate_logits = model.gate(gate_input)
        chosen, _ = model.gate_exits(feats)
        diffs = {
            'input': input_diff,
            'gate.input_tokens': max_abs_diff(
                tokens.transpose(1, 2), outputs['gate']['input_tokens']),
            'gate.input_pooled': max_abs_diff(
                gate_input, outputs['gate']['input_pooled']),
            'gate.logits': max_abs_diff(gate_logits,
                                        outputs['gate']['logits']),
        }
        diffs.update(backbone_diffs(feats, outputs['backbone']))
        assert chosen.tolist() == [outputs['exit_layer']]
        # the gated forward: the exit the gate picked
        model.set_exit(int(chosen))
        gated = PixelDecoderOutput(*pixel_decoder(feats))
        diffs.update(
            pixel_decoder_diffs(gated.mask_feature,
                                gated.multi_scale_features,
                                outputs['pixel_decoder'], 'gated.'))
        diffs.update(
            head_diffs(*model.panoptic_head(gated, []), outputs['predictor'],
                       'gated.'))
        model.set_exit(None)
        # every exit, from one encoder pass
        seen = []
        for k, mask_feature, multi_scale in pixel_decoder.forward_exits(
                feats):
            seen.append(k)
            reference = outputs['exits'][k]
            diffs.update(
                pixel_decoder_diffs(mask_feature, multi_scale,
                                    reference['pixel_decoder'],
                                    f'exit{k}.'))
            decoded = model.panoptic_head(
                PixelDecoderOutput(mask_feature, multi_scale), [])
            diffs.update(
                head_diffs(*decoded, reference['predictor'], f'exit{k}.'))
    assert seen == sorted(outputs['exits']) == [2, 3, 4, 5, 6]
    assert_close(diffs)


def test_eco_m2f_gated_inference(load_fixture, single_thread):
    """The gated paths of ``EcoMask2Former`` (``test_cfg.exit_layer='gate'``)
    pick the authors' exit and give their outputs."""
    fixture = load_fixture(ECO_FIXTURE)
    outputs = fixture['outputs']
    model = convert_tiny(fixture, 'eco')
    height, width = fixture['inputs']['image_size']
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(
        dict(
            inputs=[fixture['inputs']['image_rgb_uint8'].flip(0)],
            data_samples=[sample]), False)
    with torch.no_grad():
        cls_preds, mask_preds = model(**data, mode='tensor')
        results = model(**data, mode='predict')
    assert_close(head_diffs(cls_preds, mask_preds, outputs['predictor'], ''))
    assert results[0].metainfo['exit_layer'] == outputs['exit_layer'] == 3
    assert 'pred_panoptic_seg' in results[0]


def test_mask2former_reproduces_full_encoder(load_fixture, single_thread):
    fixture = load_fixture(ECO_FIXTURE)
    reference = fixture['outputs']['exits'][6]
    model = convert_tiny(fixture, 'mask2former', drop_gate=True)
    assert type(model).__name__ == 'Mask2Former'
    with torch.no_grad():
        inputs, _ = network_input(model, fixture)
        feats = model.backbone(inputs)
        mask_feature, multi_scale = model.panoptic_head.pixel_decoder(feats)
        cls_preds, mask_preds = model.panoptic_head(feats, [])
    diffs = pixel_decoder_diffs(mask_feature, multi_scale,
                                reference['pixel_decoder'], '')
    diffs.update(head_diffs(cls_preds, mask_preds, reference['predictor'],
                            ''))
    assert_close(diffs)


def test_wrong_mapping_is_caught(load_fixture, single_thread):
    """Exchanging the content and positional queries (same shapes, loads
    strictly) changes the outputs far beyond the tolerance."""
    fixture = load_fixture(PROSCALE_FIXTURES[0])
    model = convert_tiny(fixture, 'proscale')
    head = model.panoptic_head
    with torch.no_grad():
        feat, embed = head.query_feat.weight.clone(), head.query_embed.weight
        head.query_feat.weight.copy_(embed)
        head.query_embed.weight.copy_(feat)
        inputs, _ = network_input(model, fixture)
        cls_preds, mask_preds = head(model.backbone(inputs), [])
    diffs = head_diffs(cls_preds, mask_preds, fixture['outputs']['predictor'],
                       '')
    assert max(diffs.values()) > 100 * TOLERANCE
