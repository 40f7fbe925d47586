# Copyright (c) The proscale Authors. All rights reserved.
import copy
import functools
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope

from proscale.models.detectors import EcoMask2Former

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))
TINY_ECO = osp.join(
    REPO_ROOT,
    'configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py')
TINY_LITE_ECO = osp.join(
    REPO_ROOT, 'configs/eco_m2f/'
    'lite-eco-m2f-parent_r18_proscale-333_1xb4-tiny_synthetic-panoptic.py')
IMAGE_SHAPES = [(3, 64, 64), (3, 64, 48)]


@functools.lru_cache
def _load_model_cfg(path):
    return Config.fromfile(path).model


def _model_cfg(path=TINY_ECO, **test_cfg):
    cfg = copy.deepcopy(_load_model_cfg(path))
    cfg.train_cfg.num_points = 256
    cfg.test_cfg.update(test_cfg)
    return cfg


def _build(cfg):
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def eco():
    return _build(_model_cfg()).eval()


def _packed_inputs():
    # demo_mm_inputs draws the semantic maps from numpy's global RNG
    np.random.seed(0)
    return demo_mm_inputs(
        len(IMAGE_SHAPES),
        image_shapes=IMAGE_SHAPES,
        num_classes=8,
        with_mask=True,
        with_semantic=True)


PACKED_INPUTS = _packed_inputs()


def _batch(model, training=False):
    return model.data_preprocessor(copy.deepcopy(PACKED_INPUTS), training)


def _predict(model, exits):
    with torch.no_grad():
        data = _batch(model)
        return model.predict_exits(data['inputs'], data['data_samples'], exits)


def _differ(a, b):
    return a.shape != b.shape or not torch.allclose(a, b)


def _assert_same_predictions(samples, expected):
    for sample, ref in zip(samples, expected):
        assert torch.equal(sample.pred_panoptic_seg.sem_seg,
                           ref.pred_panoptic_seg.sem_seg)
        torch.testing.assert_close(sample.pred_instances.scores,
                                   ref.pred_instances.scores)
        assert torch.equal(sample.pred_instances.masks,
                           ref.pred_instances.masks)


def test_exits_give_different_outputs(eco):
    assert eco.exit_layers == (2, 3, 4, 5, 6)
    data = _batch(eco)
    mask_preds = {}
    with torch.no_grad():
        for k in eco.exit_layers:
            eco.set_exit(k)
            assert eco.current_exit == k
            _, all_mask_preds = eco._forward(data['inputs'],
                                             data['data_samples'])
            mask_preds[k] = all_mask_preds[-1]
    eco.set_exit(None)
    for k in eco.exit_layers[1:]:
        assert not torch.allclose(mask_preds[k - 1], mask_preds[k])


def test_predict_exits_equals_predict_at_fixed_exit(eco):
    results = _predict(eco, [6, 2, 4])
    assert list(results) == [2, 4, 6]
    for k in (2, 4):
        eco.test_cfg.exit_layer = k
        with torch.no_grad():
            data = _batch(eco)
            expected = eco.predict(data['inputs'], data['data_samples'])
        eco.test_cfg.exit_layer = None
        assert eco.current_exit == 6
        _assert_same_predictions(results[k], expected)
    # the samples of one exit are not shared with another
    assert results[2][0] is not results[4][0]


def _tensor_forward(model):
    data = _batch(model)
    with torch.no_grad():
        return model(data['inputs'], data['data_samples'], mode='tensor')


def test_tensor_forward_honours_test_cfg_exit_layer(eco):
    full = _tensor_forward(eco)
    eco.set_exit(2)
    expected = _tensor_forward(eco)
    eco.set_exit(None)
    eco.test_cfg.exit_layer = 2
    try:
        fixed = _tensor_forward(eco)
    finally:
        eco.test_cfg.exit_layer = None
    # the exit of set_exit is restored after the forward
    assert eco.current_exit == 6
    torch.testing.assert_close(fixed, expected)
    assert _differ(fixed[1][-1], full[1][-1])


def test_full_exit_equals_mmdet_mask2former(eco):
    cfg = _model_cfg()
    cfg.type = 'Mask2Former'
    cfg.panoptic_head.type = 'Mask2FormerHead'
    cfg.panoptic_head.pixel_decoder.type = 'MSDeformAttnPixelDecoder'
    cfg.panoptic_head.pixel_decoder.pop('exit_layers')
    cfg.test_cfg.pop('exit_layer')
    mask2former = _build(cfg).eval()
    mask2former.load_state_dict(eco.state_dict(), strict=True)
    with torch.no_grad():
        data = _batch(mask2former)
        expected = mask2former.predict(data['inputs'], data['data_samples'])
    _assert_same_predictions(_predict(eco, [6])[6], expected)
    with torch.no_grad():
        data = _batch(eco)
        _assert_same_predictions(
            eco.predict(data['inputs'], data['data_samples']), expected)

    eco.train()
    mask2former.train()
    losses = {}
    for name, model in (('eco', eco), ('mmdet', mask2former)):
        torch.manual_seed(1)
        losses[name] = model(**_batch(model, training=True), mode='loss')
    eco.eval()
    assert losses['eco'].keys() == losses['mmdet'].keys()
    for key, value in losses['mmdet'].items():
        torch.testing.assert_close(losses['eco'][key], value)


def _losses(model, seed=1):
    torch.manual_seed(seed)
    return model(**_batch(model, training=True), mode='loss')


def test_loss_weight_scales_every_term(eco):
    eco.train()
    eco.set_exit(3)
    reference = _losses(eco)
    assert list(eco.exit_losses) == [3]
    eco.loss_weight = 2.5
    weighted = _losses(eco)
    eco.loss_weight = 1.0
    eco.set_exit(None)
    eco.eval()
    assert weighted.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(weighted[key], 2.5 * value)
    total = sum(value.mean() for key, value in reference.items()
                if 'loss' in key)
    torch.testing.assert_close(eco.exit_losses[3], total.detach())


def test_multi_exit_loss_is_weighted_sum_of_exit_losses(eco):
    weights = {2: 2.0, 6: 6.0}
    eco.train()
    # The point sampling of every exit's loss draws from the global RNG, in
    # increasing exit order in both computations.
    torch.manual_seed(1)
    singles = {}
    for k in weights:
        eco.set_exit(k)
        singles[k] = eco(**_batch(eco, training=True), mode='loss')
    eco.set_exit(None)
    eco.exit_loss_weights = weights
    eco.loss_weight = 0.5
    combined = _losses(eco)
    exit_losses = eco.exit_losses
    eco.exit_loss_weights = None
    eco.loss_weight = 1.0
    eco.eval()
    assert list(exit_losses) == [2, 6]
    for key, value in combined.items():
        expected = 0.5 * sum(w * singles[k][key] for k, w in weights.items())
        torch.testing.assert_close(value, expected)


def test_lite_eco_exits():
    model = _build(_model_cfg(TINY_LITE_ECO)).eval()
    assert model.exit_layers == (7, 8, 9)
    results = _predict(model, None)
    assert list(results) == [7, 8, 9]
    assert _differ(results[7][0].pred_instances.scores,
                   results[9][0].pred_instances.scores)


def test_invalid_exits_raise(eco):
    with pytest.raises(ValueError, match='exit_layer=.*7'):
        eco.set_exit(7)
    with pytest.raises(ValueError, match=r'exits=\[1, 2\]'):
        _predict(eco, [1, 2])
    with pytest.raises(ValueError, match='test_cfg.exit_layer'):
        _build(_model_cfg(exit_layer=1))


def test_requires_early_exit_head_and_decoder():
    cfg = _model_cfg()
    cfg.panoptic_head.type = 'Mask2FormerHead'
    with pytest.raises(TypeError, match='EcoMask2FormerHead'):
        _build(copy.deepcopy(cfg))
    cfg = _model_cfg()
    cfg.panoptic_head.pixel_decoder.type = 'MSDeformAttnPixelDecoder'
    cfg.panoptic_head.pixel_decoder.pop('exit_layers')
    with pytest.raises(TypeError, match='no early exit'):
        _build(cfg)
    assert issubclass(EcoMask2Former, MODELS.get('Mask2Former'))
