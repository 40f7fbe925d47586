# Copyright (c) The proscale Authors. All rights reserved.
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope

from proscale.analysis import average_flops, flop_count
from proscale.analysis.exit_flops import gated_path_key

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))
TINY_GATED = osp.join(
    REPO_ROOT,
    'configs/eco_m2f/eco-m2f-gated_r18_1xb4-tiny_synthetic-panoptic.py')
NUM_IMAGES = 4


def _build(**test_cfg):
    init_default_scope('mmdet')
    cfg = Config.fromfile(TINY_GATED).model
    cfg.test_cfg.update(test_cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def _raw_batch():
    np.random.seed(0)
    return demo_mm_inputs(
        NUM_IMAGES, image_shapes=[(3, 64, 64)] * NUM_IMAGES, num_classes=8)


def _batch(model):
    return model.data_preprocessor(_raw_batch(), False)


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def gated(single_thread):
    """The tiny gated model with a gate that sends the images of the test
    batch to three different exits."""
    model = _build()
    data = _batch(model)
    with torch.no_grad():
        gate_input = model.gate_input(
            model.extract_feat(data['inputs']), data['data_samples'])
        # three lines whose upper envelope picks exit 2 below c0, exit 3
        # between c0 and c1 and exit 6 above c1 (on channel 0)
        values = gate_input[:, 0].sort().values
        c0, c1 = (values[0] + values[1]) / 2, (values[2] + values[3]) / 2
        slope = 1e3
        model.gate.head.weight.zero_()
        model.gate.head.weight[:,
                               0] = torch.tensor([0, slope, 0, 0, 2 * slope])
        model.gate.head.bias.copy_(
            torch.tensor([0, -slope * c0, -1e9, -1e9, -slope * (c0 + c1)]))
        model.gate.trained.fill_(True)
        exits, _ = model.gate_exits(
            model.extract_feat(data['inputs']), data['data_samples'])
    assert sorted(exits.tolist()) == [2, 3, 3, 6]
    return model, data, exits


def _one_by_one(model, data, index):
    return model.predict(data['inputs'][index:index + 1],
                         copy.deepcopy(data['data_samples'][index:index + 1]))


def test_gated_batch_equals_one_by_one(gated):
    model, data, exits = gated
    # mkldnn's batched convolutions round differently for different batch
    # sizes (for any model); without it every image is computed alone.
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        batch = model.predict(data['inputs'],
                              copy.deepcopy(data['data_samples']))
        for i, sample in enumerate(batch):
            alone = _one_by_one(model, data, i)[0]
            assert sample.metainfo['exit_layer'] == exits[i].item()
            assert alone.metainfo['exit_layer'] == exits[i].item()
            assert torch.equal(sample.pred_panoptic_seg.sem_seg,
                               alone.pred_panoptic_seg.sem_seg)
            assert torch.equal(sample.pred_instances.scores,
                               alone.pred_instances.scores)
            assert torch.equal(sample.pred_instances.masks,
                               alone.pred_instances.masks)


def _set_threshold_gate(model, threshold, low_exit, high_exit):
    """Gate picking ``high_exit`` when channel 0 of the input exceeds
    ``threshold``, else ``low_exit``."""
    exits = list(model.gate.exits)
    with torch.no_grad():
        model.gate.head.weight.zero_()
        model.gate.head.bias.fill_(-1e9)
        model.gate.head.bias[exits.index(low_exit)] = 0
        model.gate.head.weight[exits.index(high_exit), 0] = 1e3
        model.gate.head.bias[exits.index(high_exit)] = -1e3 * threshold
        model.gate.trained.fill_(True)


def test_mixed_size_batch_equals_one_by_one():
    """Images of different sizes get their batch-1 exits and outputs."""
    model = _build()
    np.random.seed(1)
    packed = demo_mm_inputs(
        2, image_shapes=[(3, 96, 64), (3, 40, 56)], num_classes=8)
    alone = [
        model.data_preprocessor(
            dict(
                inputs=packed['inputs'][i:i + 1],
                data_samples=copy.deepcopy(packed['data_samples'][i:i + 1])),
            False) for i in range(2)
    ]
    data = model.data_preprocessor(copy.deepcopy(packed), False)
    assert data['inputs'].shape[-2:] == (96, 64)
    assert alone[1]['inputs'].shape[-2:] == (64, 64)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        values = [
            model.gate_input(
                model.extract_feat(one['inputs']),
                one['data_samples'])[0, 0].item() for one in alone
        ]
        _set_threshold_gate(model, sum(values) / 2, 2, 5)
        batch = model.predict(data['inputs'], data['data_samples'])
        singles = [
            model.predict(one['inputs'], one['data_samples'])[0]
            for one in alone
        ]
    expected_exits = [5 if v > sum(values) / 2 else 2 for v in values]
    assert sorted(expected_exits) == [2, 5]
    for sample, single, exit_layer in zip(batch, singles, expected_exits):
        assert sample.metainfo['exit_layer'] == exit_layer
        assert single.metainfo['exit_layer'] == exit_layer
        assert sample.batch_input_shape == single.batch_input_shape
        assert torch.equal(sample.pred_panoptic_seg.sem_seg,
                           single.pred_panoptic_seg.sem_seg)
        assert torch.equal(sample.pred_instances.masks,
                           single.pred_instances.masks)


def test_multi_scale_gate_input():
    init_default_scope('mmdet')
    cfg = Config.fromfile(TINY_GATED).model
    cfg.gate.update(in_channels=3 * 64, input_levels=3)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval().gate.trained.fill_(True)
    data = _batch(model)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        exits, _ = model.gate_exits(feats, data['data_samples'])
        gate_input = model.gate_input(feats, data['data_samples'], None, 3)
    assert gate_input.shape == (NUM_IMAGES, 3 * 64)
    assert torch.equal(exits, model.gate.predict(gate_input))


def test_gate_pools_over_the_valid_region():
    model = _build()
    decoder = model.panoptic_head.pixel_decoder
    feats = [torch.randn(2, c, 256 // s, 256 // s)
             for c, s in zip((32, 64, 128, 256), (4, 8, 16, 32))]
    with torch.no_grad():
        coarse = decoder.input_convs[0](feats[3])
        pooled = decoder.gate_features(
            feats, torch.tensor([[256, 256], [70, 100]]))
    torch.testing.assert_close(pooled[0], coarse[0].mean(dim=(1, 2)))
    # ceil(70 / 32) x ceil(100 / 32) = 3 x 4 cells
    torch.testing.assert_close(pooled[1], coarse[1, :, :3, :4].mean(
        dim=(1, 2)))


def test_gated_path_projects_the_inputs_once(gated):
    model, data, _ = gated
    calls = []
    input_conv = model.panoptic_head.pixel_decoder.input_convs[0]
    handle = input_conv.register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.no_grad():
            model.predict(data['inputs'][:1],
                          copy.deepcopy(data['data_samples'][:1]))
            model._forward(data['inputs'][:1])
    finally:
        handle.remove()
    assert len(calls) == 2


def test_gated_image_equals_its_fixed_exit(gated):
    model, data, exits = gated
    i = int(exits.argmax())
    with torch.no_grad():
        gated_sample = _one_by_one(model, data, i)[0]
        model.test_cfg['exit_layer'] = exits[i].item()
        try:
            fixed = _one_by_one(model, data, i)[0]
        finally:
            model.test_cfg['exit_layer'] = 'gate'
    assert torch.equal(gated_sample.pred_panoptic_seg.sem_seg,
                       fixed.pred_panoptic_seg.sem_seg)


def test_tensor_forward_takes_the_gated_path(gated):
    model, data, exits = gated
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        cls_scores, mask_preds = model._forward(data['inputs'])
        for i in range(NUM_IMAGES):
            cls_alone, masks_alone = model._forward(data['inputs'][i:i + 1])
            assert torch.equal(cls_scores[-1][i], cls_alone[-1][0])
            assert torch.equal(mask_preds[-1][i], masks_alone[-1][0])
        model.set_exit(exits[0].item())
        model.test_cfg['exit_layer'] = None
        try:
            _, fixed_masks = model._forward(data['inputs'][:1])
        finally:
            model.test_cfg['exit_layer'] = 'gate'
            model.set_exit(None)
    assert torch.equal(mask_preds[-1][0], fixed_masks[-1][0])


def test_flop_average_counts_one_image_per_size_and_exit(
        gated, monkeypatch):
    model, _, exits = gated
    traced = average_flops(model, [_raw_batch()], NUM_IMAGES)
    counted = []
    count_flops = flop_count.count_flops

    def counting(*args):
        counted.append(1)
        return count_flops(*args)

    monkeypatch.setattr(flop_count, 'count_flops', counting)
    keyed = average_flops(model, [_raw_batch()], NUM_IMAGES,
                          gated_path_key(model))
    assert keyed == traced
    assert len(counted) == len(set(exits.tolist())) == 3
    model.test_cfg['exit_layer'] = 6
    try:
        assert gated_path_key(model) is None
    finally:
        model.test_cfg['exit_layer'] = 'gate'


def test_untrained_gate_is_refused(gated):
    model, data, _ = gated
    model.gate.trained.fill_(False)
    try:
        with pytest.raises(RuntimeError, match='merge_gate.py'):
            model.predict(data['inputs'], data['data_samples'])
    finally:
        model.gate.trained.fill_(True)


def test_gate_config_errors():
    with pytest.raises(ValueError, match='needs a gate'):
        init_default_scope('mmdet')
        cfg = Config.fromfile(TINY_GATED).model
        cfg.gate = None
        MODELS.build(cfg)
    with pytest.raises(ValueError, match='gate.exits'):
        cfg = Config.fromfile(TINY_GATED).model
        cfg.gate.exits = (2, 7)
        MODELS.build(cfg)


def test_gate_after_the_first_encoder_layer():
    """A gate reading the tokens after encoder layer 1: each image equals
    its fixed exit and layer 1 runs once per image (the exits resume)."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(TINY_GATED).model
    cfg.gate.update(input_depth=1)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval()
    data = _batch(model)
    decoder = model.panoptic_head.pixel_decoder
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        feats = model.extract_feat(data['inputs'])
        encoded = decoder.encode_layers(list(feats), 1)
        _, fixed_tokens = next(
            decoder.encoder.forward_exits(
                exits=(1, ), **decoder._encoder_inputs(list(feats))))
        torch.testing.assert_close(encoded, fixed_tokens)
        gate_input = model.gate_input(feats, data['data_samples'], None, 1,
                                      encoded)
        projected_input = model.gate_input(feats, data['data_samples'])
        assert not torch.allclose(gate_input, projected_input)
        values = gate_input[:, 0].sort().values
        _set_threshold_gate(model, (values[1] + values[2]) / 2, 2, 4)
        calls = []
        handle = decoder.encoder.layers[0].register_forward_hook(
            lambda *args: calls.append(1))
        try:
            batch = model.predict(data['inputs'],
                                  copy.deepcopy(data['data_samples']))
            cls_scores, _ = model._forward(data['inputs'])
        finally:
            handle.remove()
        # one predict and one tensor forward, each over one size group
        assert len(calls) == 2
        exits = [sample.metainfo['exit_layer'] for sample in batch]
        assert sorted(exits) == [2, 2, 4, 4]
        model.test_cfg['exit_layer'] = None
        try:
            for i, sample in enumerate(batch):
                model.set_exit(exits[i])
                fixed = _one_by_one(model, data, i)[0]
                assert torch.equal(sample.pred_panoptic_seg.sem_seg,
                                   fixed.pred_panoptic_seg.sem_seg)
                fixed_cls, _ = model._forward(data['inputs'][i:i + 1])
                torch.testing.assert_close(cls_scores[-1][i],
                                           fixed_cls[-1][0])
        finally:
            model.test_cfg['exit_layer'] = 'gate'
            model.set_exit(None)
    with pytest.raises(ValueError, match='input_depth'):
        MODELS.build(dict(cfg.gate, input_depth=3))
    with pytest.raises(ValueError, match='cannot resume'):
        next(
            decoder.forward_exits(
                list(feats), (2, ), resume=(3, decoder.encode_layers(
                    list(feats), 3))))
