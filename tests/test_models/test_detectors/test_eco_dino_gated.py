# Copyright (c) The proscale Authors. All rights reserved.
"""Gated inference of EcoDINO: batches equal their images alone."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))
TINY_GATED_DINO = osp.join(
    REPO_ROOT, 'configs/proscale_detr/'
    'eco-dino-gated_r18_1xb4-tiny_synthetic-detection.py')

pytestmark = pytest.mark.usefixtures('single_thread')


def _build(**gate):
    init_default_scope('mmdet')
    cfg = Config.fromfile(TINY_GATED_DINO).model
    cfg.gate.update(gate)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


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


def _preprocess(model, packed, index):
    return model.data_preprocessor(
        dict(
            inputs=[packed['inputs'][i] for i in index],
            data_samples=copy.deepcopy(
                [packed['data_samples'][i] for i in index])), False)


@pytest.fixture(scope='module')
def mixed(single_thread):
    """The gated tiny DINO, three images of two sizes and a gate sending
    them to two exits."""
    model = _build()
    np.random.seed(1)
    packed = demo_mm_inputs(
        3, image_shapes=[(3, 96, 64), (3, 40, 56), (3, 96, 64)],
        num_classes=4)
    alone = [_preprocess(model, packed, [i]) for i in range(3)]
    with torch.no_grad():
        values = [
            model.gate_input(
                model.extract_feat(one['inputs']),
                one['data_samples'])[0, 0].item() for one in alone
        ]
    threshold = (sorted(values)[0] + sorted(values)[1]) / 2
    _set_threshold_gate(model, threshold, 2, 5)
    exits = [5 if v > threshold else 2 for v in values]
    assert sorted(exits) == [2, 5, 5]
    return model, packed, alone, exits


def test_mixed_size_batch_equals_one_by_one(mixed):
    model, packed, alone, exits = mixed
    data = _preprocess(model, packed, range(3))
    assert data['inputs'].shape[-2:] == (96, 64)
    # mkldnn's batched convolutions round differently for different batch
    # sizes (for any model); without it every image is computed alone.
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        batch = model.predict(data['inputs'], data['data_samples'])
        singles = [
            model.predict(one['inputs'], one['data_samples'])[0]
            for one in alone
        ]
    for sample, single, exit_layer in zip(batch, singles, exits):
        assert sample.metainfo['exit_layer'] == exit_layer
        assert single.metainfo['exit_layer'] == exit_layer
        assert sample.batch_input_shape == single.batch_input_shape
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(sample.pred_instances[key],
                               single.pred_instances[key])


def test_gated_image_equals_its_fixed_exit(mixed):
    model, _, alone, exits = mixed
    with torch.no_grad():
        for one, exit_layer in zip(alone, exits):
            gated = model.predict(one['inputs'],
                                  copy.deepcopy(one['data_samples']))[0]
            model.test_cfg['exit_layer'] = exit_layer
            try:
                fixed = model.predict(one['inputs'],
                                      copy.deepcopy(one['data_samples']))[0]
            finally:
                model.test_cfg['exit_layer'] = 'gate'
            assert torch.equal(gated.pred_instances.bboxes,
                               fixed.pred_instances.bboxes)


def test_tensor_forward_takes_the_gated_path(mixed):
    model, packed, alone, exits = mixed
    same_size = _preprocess(model, packed, [0, 2])
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        scores, boxes = model._forward(same_size['inputs'],
                                       same_size['data_samples'])
        assert scores.shape[1] == 2  # (decoder layers, B, queries, classes)
        for j, i in enumerate((0, 2)):
            model.test_cfg['exit_layer'] = exits[i]
            try:
                fixed_scores, fixed_boxes = model._forward(
                    alone[i]['inputs'], alone[i]['data_samples'])
            finally:
                model.test_cfg['exit_layer'] = 'gate'
            assert torch.equal(scores[:, j], fixed_scores[:, 0])
            assert torch.equal(boxes[:, j], fixed_boxes[:, 0])


def test_gate_pools_over_the_unmasked_cells():
    model = _build()
    feats = [torch.randn(2, 256, 64 // s, 64 // s) for s in (1, 2, 4, 8)]
    samples = demo_mm_inputs(
        2, image_shapes=[(3, 64, 64), (3, 64, 64)],
        num_classes=4)['data_samples']
    samples[0].set_metainfo(dict(batch_input_shape=(512, 512),
                                 img_shape=(512, 512)))
    samples[1].set_metainfo(dict(batch_input_shape=(512, 512),
                                 img_shape=(256, 384)))
    with torch.no_grad():
        pooled = model.gate_input(feats, samples, num_levels=2)
    assert pooled.shape == (2, 512)
    # coarsest first; image 1 covers 4 x 6 of the 8 x 8 cells
    torch.testing.assert_close(pooled[0, :256], feats[3][0].mean(dim=(1, 2)))
    torch.testing.assert_close(pooled[1, :256],
                               feats[3][1, :, :4, :6].mean(dim=(1, 2)))
    torch.testing.assert_close(pooled[1, 256:],
                               feats[2][1, :, :8, :12].mean(dim=(1, 2)))


def test_multi_scale_gate_and_config_errors():
    model = _build(in_channels=4 * 256, input_levels=4)
    np.random.seed(0)
    packed = demo_mm_inputs(2, image_shapes=[(3, 64, 64)] * 2, num_classes=4)
    data = _preprocess(model, packed, range(2))
    model.gate.trained.fill_(True)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        exits, reuse = model.gate_exits(feats, data['data_samples'])
        gate_input = model.gate_input(feats, data['data_samples'], None, 4)
    assert reuse == {} and gate_input.shape == (2, 4 * 256)
    assert torch.equal(exits, model.gate.predict(gate_input))
    with pytest.raises(ValueError, match='input_depth'):
        _build(input_depth=1)
