# Copyright (c) The proscale Authors. All rights reserved.
"""DINO and Deformable DETR with the PRO-SCALE encoder."""
from pathlib import Path

import pytest
import torch
from mmdet.models.detectors import DINO
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import MODELS
from mmengine.structures import InstanceData

from proscale.models.detectors import ProScaleDeformableDETR, ProScaleDINO
from proscale.models.layers import (ProScaleDetrTransformerEncoder,
                                    reverse_attention_levels)

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_DINO = (REPO_ROOT / 'configs/proscale_detr/'
             'dino-4scale_r18_1xb4-tiny_synthetic-detection.py')
DEFORMABLE_DETR = (REPO_ROOT / 'configs/proscale_detr/'
                   'deformable-detr-refine-twostage_r50_proscale-1122_'
                   '16xb2-50e_coco.py')
IMAGE_SIZES = ((61, 83), (64, 70))  # odd, and different: padding masks


@pytest.fixture(scope='module', autouse=True)
def _one_thread(single_thread):
    yield


def _tiny_dino_cfg(**encoder) -> Config:
    """The tiny DINO config, 2 encoder and 1 decoder layers."""
    cfg = Config.fromfile(str(TINY_DINO)).model
    cfg.encoder.num_layers = 2
    cfg.decoder.num_layers = 1
    cfg.encoder.update(encoder)
    return cfg


def _build(cfg: Config) -> torch.nn.Module:
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _batch(model, sizes=IMAGE_SIZES, seed=0):
    """A preprocessed batch with two boxes per image."""
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for h, w in sizes:
        inputs.append(
            torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                          generator=generator))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[2., 3., 30., 40.], [20., 10., 50., 55.]]),
            labels=torch.tensor([0, 2]))
        samples.append(sample)
    return model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), False)


def test_proscale_dino_builds_the_proscale_encoder():
    cfg = _tiny_dino_cfg(
        num_layers=None,
        num_layers_per_stage=(1, 0, 0, 1),
        trc=dict(type='linear', layout='spatial'))
    cfg.type = 'ProScaleDINO'
    model = _build(cfg)
    assert isinstance(model, ProScaleDINO)
    assert isinstance(model.encoder, ProScaleDetrTransformerEncoder)
    assert model.encoder.layer_levels == [1, 4]
    assert model.encoder.trc.layout == 'spatial'


@pytest.mark.parametrize('sizes', [IMAGE_SIZES, ((61, 83), (61, 83))])
def test_one_stage_without_trc_predicts_as_mmdet_dino(sizes):
    """mmdet's DINO weights (attention levels reversed) give the same
    network outputs: the memory comes back in mmdet's level order before
    the two-stage query selection."""
    dino = _build(_tiny_dino_cfg()).eval()
    cfg = _tiny_dino_cfg(num_layers=None, num_layers_per_stage=(0, 0, 0, 2))
    cfg.type = 'ProScaleDINO'
    proscale = _build(cfg).eval()
    assert type(dino) is DINO
    attn = cfg.encoder.layer_cfg.self_attn_cfg
    proscale.load_state_dict(
        reverse_attention_levels(dino.state_dict(), attn.num_heads,
                                 attn.num_levels, attn.num_points))
    data = _batch(dino, sizes)
    with torch.no_grad():
        expected = dino(data['inputs'], data['data_samples'], mode='tensor')
        outputs = proscale(
            data['inputs'], data['data_samples'], mode='tensor')
    for out, ref in zip(outputs, expected):
        assert torch.allclose(out, ref, atol=1e-4, rtol=0)


def test_gradient_reaches_every_encoder_parameter():
    cfg = _tiny_dino_cfg(
        num_layers=None,
        num_layers_per_stage=(1, 1, 0, 1),
        trc=dict(type='conv', layout='legacy'))
    cfg.type = 'ProScaleDINO'
    model = _build(cfg).train()
    data = _batch(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    sum(value for key, value in losses.items()
        if 'loss' in key).backward()
    missing = [
        name for name, param in model.encoder.named_parameters()
        if param.grad is None or not param.grad.abs().sum() > 0
    ]
    assert not missing


def test_deformable_detr_two_stage_refine_runs():
    cfg = Config.fromfile(str(DEFORMABLE_DETR)).model
    tiny = _tiny_dino_cfg()
    cfg.backbone = tiny.backbone
    cfg.neck = tiny.neck
    cfg.encoder.layer_cfg.ffn_cfg.feedforward_channels = 64
    cfg.encoder.num_layers_per_stage = (1, 0, 1, 0)
    cfg.decoder.num_layers = 1
    cfg.decoder.layer_cfg.ffn_cfg.feedforward_channels = 64
    cfg.num_queries = 20
    model = _build(cfg)
    assert isinstance(model, ProScaleDeformableDETR)
    assert model.encoder.layer_levels == [1, 3]
    data = _batch(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert torch.isfinite(sum(v for k, v in losses.items() if 'loss' in k))
    model.eval()
    with torch.no_grad():
        results = model.predict(data['inputs'], data['data_samples'])
    assert results[0].pred_instances.bboxes.shape == (
        model.test_cfg.max_per_img, 4)
