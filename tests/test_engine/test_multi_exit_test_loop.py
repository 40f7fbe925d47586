# Copyright (c) The proscale Authors. All rights reserved.
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS
from mmengine.runner import Runner

from proscale.engine.loops import split_exit_metrics

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(__file__)))
TINY_ECO = osp.join(
    REPO_ROOT,
    'configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py')


@METRICS.register_module()
class EcoTestScoreSum(BaseMetric):
    """Sum of the predicted instance scores: tells the exits apart."""

    def process(self, data_batch, data_samples):
        self.results.extend(
            float(sample['pred_instances']['scores'].sum())
            for sample in data_samples)

    def compute_metrics(self, results):
        return dict(score_sum=sum(results), num_images=len(results))


def test_split_exit_metrics():
    metrics = {'exit4/a/PQ': 1.0, 'exit10/a/PQ': 2.0, 'exit4/b': 3.0, 'c': 4}
    assert split_exit_metrics(metrics) == {
        4: {
            'a/PQ': 1.0,
            'b': 3.0
        },
        10: {
            'a/PQ': 2.0
        }
    }


def test_each_exit_feeds_its_own_evaluator(synthetic_cfg_overrides, tmp_path):
    cfg = Config.fromfile(TINY_ECO)
    cfg.merge_from_dict(synthetic_cfg_overrides)
    torch.manual_seed(0)
    runner = Runner(
        model=cfg.model,
        work_dir=str(tmp_path),
        test_dataloader=cfg.test_dataloader,
        test_cfg=dict(type='MultiExitTestLoop', exits=[6, 2]),
        test_evaluator=dict(type='EcoTestScoreSum'),
        default_scope='mmdet')
    per_exit = split_exit_metrics(runner.test())
    assert list(per_exit) == [2, 6]
    num_images = len(runner.test_loop.dataloader.dataset)

    model = runner.model
    for k, metrics in per_exit.items():
        assert metrics['num_images'] == num_images
        model.test_cfg.exit_layer = k
        with torch.no_grad():
            expected = sum(
                float(sample.pred_instances.scores.sum())
                for data_batch in runner.test_loop.dataloader
                for sample in model.test_step(copy.deepcopy(data_batch)))
        assert metrics['score_sum'] == pytest.approx(expected, rel=1e-5)
    assert per_exit[2]['score_sum'] != per_exit[6]['score_sum']


def test_rejects_a_model_without_exits(synthetic_cfg_overrides, tmp_path):
    cfg = Config.fromfile(
        osp.join(
            REPO_ROOT, 'configs/mask2former/'
            'mask2former_r18_1xb4-tiny_synthetic-panoptic.py'))
    cfg.merge_from_dict(synthetic_cfg_overrides)
    runner = Runner(
        model=cfg.model,
        work_dir=str(tmp_path),
        test_dataloader=cfg.test_dataloader,
        test_cfg=dict(type='MultiExitTestLoop'),
        test_evaluator=dict(type='EcoTestScoreSum'),
        default_scope='mmdet')
    with pytest.raises(TypeError, match='early-exit model'):
        runner.test()
