# Copyright (c) The proscale Authors. All rights reserved.
"""FLOP counting and benchmark workloads of DETR-family detectors."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS

from proscale.analysis import (count_flops, fixed_shape_batch, get_encoder,
                               make_workload)

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_DINO = (REPO_ROOT / 'configs/proscale_detr/'
             'dino-4scale_r18_1xb4-tiny_synthetic-detection.py')
SHAPE = (64, 96)


@pytest.fixture(scope='module', autouse=True)
def _one_thread(single_thread):
    yield


def _tiny_dino(num_layers_per_stage=None):
    cfg = Config.fromfile(str(TINY_DINO)).model
    cfg.encoder.num_layers = 2
    cfg.decoder.num_layers = 1
    if num_layers_per_stage is not None:
        cfg.type = 'ProScaleDINO'
        cfg.encoder.update(
            num_layers=None, num_layers_per_stage=num_layers_per_stage)
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def test_encoder_is_the_detr_encoder():
    model = _tiny_dino()
    assert get_encoder(model) is model.encoder


def test_flops_split_by_part():
    baseline = count_flops(_tiny_dino(),
                           fixed_shape_batch(_tiny_dino(), SHAPE))
    same = count_flops(
        _tiny_dino((0, 0, 0, 2)), fixed_shape_batch(_tiny_dino(), SHAPE))
    proscale = count_flops(
        _tiny_dino((1, 0, 0, 1)), fixed_shape_batch(_tiny_dino(), SHAPE))
    for result in (baseline, same, proscale):
        assert result['total'] == pytest.approx(
            result['backbone'] + result['encoder'] + result['decoder'])
        assert min(result['backbone'], result['encoder'],
                   result['decoder'], result['msda_sampling']) > 0
    # One stage with all layers costs what mmdet's encoder costs.
    assert same['encoder'] == pytest.approx(baseline['encoder'])
    assert proscale['encoder'] < 0.6 * baseline['encoder']
    assert proscale['backbone'] == pytest.approx(baseline['backbone'])
    assert proscale['decoder'] == pytest.approx(baseline['decoder'])


def test_encoder_workload_runs_the_encoder_only():
    model = _tiny_dino((1, 0, 0, 1))
    outputs = make_workload(model, SHAPE, part='encoder')()
    num_tokens = sum(-(-SHAPE[0] // s) * -(-SHAPE[1] // s)
                     for s in (8, 16, 32, 64))
    assert outputs['memory'].shape == (1, num_tokens, 256)
    assert make_workload(model, SHAPE, part='model')() is not None
