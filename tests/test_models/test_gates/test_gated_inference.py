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


def _batch(model):
    np.random.seed(0)
    packed = demo_mm_inputs(
        NUM_IMAGES, image_shapes=[(3, 64, 64)] * NUM_IMAGES, num_classes=8)
    return model.data_preprocessor(copy.deepcopy(packed), False)


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def gated(single_thread):
    """The tiny gated model with a gate that sends the images of the test
    batch to three different exits."""
    model = _build()
    data = _batch(model)
    with torch.no_grad():
        gate_input = model.panoptic_head.pixel_decoder.gate_features(
            list(model.extract_feat(data['inputs'])))
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
        exits = model.gate_exits(model.extract_feat(data['inputs']))
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
