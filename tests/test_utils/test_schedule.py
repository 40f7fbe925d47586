# Copyright (c) The proscale Authors. All rights reserved.
"""``scale_schedule`` (``tools/train.py --max-iters``): a shortened run goes
through the whole schedule."""
from pathlib import Path
from typing import List

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS

from proscale.utils.cli import UserInputError, load_config
from proscale.utils.schedule import ScheduleScaler, scale_schedule

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIGS = [
    'configs/mask2former/mask2former_r18_1xb4-tiny_synthetic-panoptic.py',
    'configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py',
]
COCO_CONFIG = ('configs/proscale/'
               'mask2former_r50_proscale-333_8xb2-lsj-50e_coco-panoptic.py')


def lr_per_iteration(cfg: Config) -> List[float]:
    """The learning rate each training iteration of ``cfg`` runs with.

    Steps the config's parameter schedulers once after every iteration, as
    mmengine's ``ParamSchedulerHook`` does for iteration-based schedulers.
    """
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))],
                                lr=cfg.optim_wrapper.optimizer.lr)
    wrapper = OptimWrapper(optimizer)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(scheduler, optimizer=wrapper))
        for scheduler in cfg.param_scheduler
    ]
    lrs = []
    for _ in range(cfg.train_cfg.max_iters):
        lrs.append(optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    return lrs


@pytest.mark.parametrize('config', TINY_CONFIGS)
def test_shortened_run_ends_decayed_like_the_full_one(config):
    full = Config.fromfile(str(REPO_ROOT / config))
    base_lr = full.optim_wrapper.optimizer.lr
    full_end = lr_per_iteration(full)[-1]
    shortened = load_config(str(REPO_ROOT / config), max_iters=100)
    lrs = lr_per_iteration(shortened)
    assert len(lrs) == 100
    # Decayed to the cosine's floor (1% of the base lr), as the full run.
    assert full_end < 0.011 * base_lr
    assert lrs[-1] == pytest.approx(full_end, rel=0.05)
    assert max(lrs) == pytest.approx(base_lr)
    # Only max_iters changed: the run stops high in the middle of the decay.
    truncated = load_config(
        str(REPO_ROOT / config), {'train_cfg.max_iters': 100})
    assert lr_per_iteration(truncated)[-1] > 0.5 * base_lr


def test_tiny_schedule_is_scaled_proportionally():
    cfg = Config.fromfile(str(REPO_ROOT / TINY_CONFIGS[0]))
    scale_schedule(cfg, 600)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 40)
    assert (cosine.begin, cosine.end, cosine.T_max) == (40, 600, 560)
    assert cfg.train_cfg.max_iters == cfg.train_cfg.val_interval == 600
    assert cfg.default_hooks.checkpoint.interval == 200


def test_coco_milestones_and_intervals_are_scaled():
    cfg = Config.fromfile(str(REPO_ROOT / COCO_CONFIG))
    scale_schedule(cfg, 36875)  # 10% of 368,750
    scheduler = cfg.param_scheduler  # one dict, as in mmdet
    assert scheduler.type == 'MultiStepLR'
    assert scheduler.milestones == [32778, 35509]
    assert scheduler.end == 36875
    assert cfg.train_cfg.val_interval == 500
    assert cfg.default_hooks.checkpoint.interval == 500
    assert cfg.train_cfg.dynamic_intervals == [(36500, 36875)]


@pytest.mark.parametrize('old, new, iteration, expected', [
    (300, 4, 0, 0), (300, 4, 20, 2), (300, 4, 300, 4), (300, 4, 299, 3),
    (300, 600, 20, 40), (300, 100, 20, 7), (300, 100, 1, 1),
    (300, 4, 10**8, 10**8), (300, 2, 20, 1), (300, 1, 20, 1)
])
def test_scaler_point(old, new, iteration, expected):
    assert ScheduleScaler(old, new).point(iteration) == expected


def test_schedule_that_cannot_be_scaled_is_named(tmp_path):
    config = tmp_path / 'epochs.py'
    config.write_text(
        "train_cfg = dict(type='IterBasedTrainLoop', max_iters=10)\n"
        "param_scheduler = [dict(type='MultiStepLR', milestones=[8])]\n")
    with pytest.raises(UserInputError, match=r'param_scheduler\.0 '):
        load_config(str(config), max_iters=5)
    config.write_text(
        "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12)\n")
    with pytest.raises(UserInputError, match='EpochBasedTrainLoop'):
        load_config(str(config), max_iters=5)
