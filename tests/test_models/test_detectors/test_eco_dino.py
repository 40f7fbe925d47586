# Copyright (c) The proscale Authors. All rights reserved.
import copy
import functools
import os.path as osp

import pytest
import torch
from mmdet.models.layers import DeformableDetrTransformerEncoder
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.registry import init_default_scope

from proscale.models.detectors import EarlyExitMixin, EcoDINO

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))
TINY_ECO_DINO = osp.join(
    REPO_ROOT, 'configs/proscale_detr/'
    'eco-dino-parent_r18_1xb4-tiny_synthetic-detection.py')
IMAGE_SHAPES = [(3, 64, 64), (3, 64, 48)]


@functools.lru_cache
def _load_model_cfg():
    return Config.fromfile(TINY_ECO_DINO).model


def _build(cfg=None, **overrides):
    cfg = Config(dict(model=copy.deepcopy(cfg or _load_model_cfg())))
    cfg.merge_from_dict(dict(model=overrides))
    cfg = cfg.model
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def eco_dino():
    return _build().eval()


def _batch(model):
    packed = demo_mm_inputs(
        len(IMAGE_SHAPES), image_shapes=IMAGE_SHAPES, num_classes=4)
    return model.data_preprocessor(packed, True)


def _scores(samples):
    return [sample.pred_instances.scores for sample in samples]


def test_interface(eco_dino, single_thread):
    assert isinstance(eco_dino, EarlyExitMixin)
    assert eco_dino.exit_layers == (2, 3, 4, 5, 6)
    assert eco_dino.current_exit == 6
    eco_dino.set_exit(3)
    assert eco_dino.current_exit == 3
    eco_dino.set_exit(None)
    with pytest.raises(ValueError, match='exit_layer=.*7'):
        eco_dino.set_exit(7)
    # the PRO-SCALE split exits in its last stage by default
    proscale = _build(
        encoder=dict(num_layers_per_stage=(1, 1, 2, 2)),
        exit_layers=None)
    assert proscale.exit_layers == (5, 6)
    with pytest.raises(ValueError, match='test_cfg.exit_layer'):
        _build(test_cfg=dict(exit_layer=1))
    with pytest.raises(ValueError, match='test_cfg.exit_layer'):
        _build(test_cfg=dict(exit_layer='gate'))


@torch.no_grad()
def test_predict_exits_match_predict(eco_dino, single_thread):
    data = _batch(eco_dino)
    inputs, samples = data['inputs'], data['data_samples']
    exits = eco_dino.predict_exits(inputs, samples, [2, 4, 6])
    assert list(exits) == [2, 4, 6]
    assert not torch.equal(exits[2][0].pred_instances.bboxes,
                           exits[6][0].pred_instances.bboxes)
    for k in (2, 6):
        eco_dino.test_cfg['exit_layer'] = k
        try:
            fixed = eco_dino.predict(inputs, [s.clone() for s in samples])
        finally:
            eco_dino.test_cfg['exit_layer'] = None
        for a, b in zip(_scores(fixed), _scores(exits[k])):
            torch.testing.assert_close(a, b)
    assert eco_dino.current_exit == 6
    full = eco_dino.predict(inputs, [s.clone() for s in samples])
    for a, b in zip(_scores(full), _scores(exits[6])):
        torch.testing.assert_close(a, b)


def test_loss_at_one_and_several_exits(eco_dino, single_thread):
    eco_dino.train()
    try:
        data = _batch(eco_dino)
        eco_dino.set_exit(2)
        eco_dino.loss_weight = 2.0
        losses = eco_dino.loss(data['inputs'], data['data_samples'])
        assert list(eco_dino.exit_losses) == [2]
        total, _ = eco_dino.parse_losses(losses)
        torch.testing.assert_close(total.detach(),
                                   2.0 * eco_dino.exit_losses[2])

        eco_dino.set_exit(None)
        eco_dino.loss_weight = 1.0
        eco_dino.exit_loss_weights = {2: 2.0, 6: 6.0}
        eco_dino.zero_grad()
        losses = eco_dino.loss(data['inputs'], data['data_samples'])
        assert list(eco_dino.exit_losses) == [2, 6]
        total, _ = eco_dino.parse_losses(losses)
        total.backward()
        missing = [
            name for name, param in eco_dino.named_parameters()
            if param.requires_grad and param.grad is None
        ]
        assert not missing
    finally:
        eco_dino.exit_loss_weights = None
        eco_dino.set_exit(None)
        eco_dino.eval()


def test_rejects_an_encoder_without_exits():
    MODELS.register_module(
        'NoExitDetrEncoder', module=DeformableDetrTransformerEncoder,
        force=True)
    cfg = copy.deepcopy(_load_model_cfg())
    cfg.encoder = dict(
        type='NoExitDetrEncoder',
        num_layers=6,
        layer_cfg=cfg.encoder.layer_cfg)
    with pytest.raises(TypeError, match='no early exit'):
        _build(cfg)


def test_registered():
    assert MODELS.get('EcoDINO') is EcoDINO


@torch.no_grad()
def test_gated_inference_needs_a_gate(eco_dino, single_thread):
    data = _batch(eco_dino)
    eco_dino.test_cfg['exit_layer'] = 'gate'
    try:
        with pytest.raises(ValueError, match='has no gate'):
            eco_dino.predict(data['inputs'], data['data_samples'])
    finally:
        eco_dino.test_cfg['exit_layer'] = None
