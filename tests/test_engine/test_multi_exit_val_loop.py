# Copyright (c) The proscale Authors. All rights reserved.
import json

import pytest

from proscale.engine.loops import MultiExitValLoop

PARENT = 'configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py'


def test_main_exit_metrics_get_the_usual_names():
    loop = object.__new__(MultiExitValLoop)
    loop.main_exit = 6
    metrics = {
        'exit2/coco_panoptic/PQ': 1.0,
        'exit6/coco_panoptic/PQ': 2.0,
        'exit6/coco_panoptic/SQ': 3.0,
    }
    assert loop.extra_metrics(metrics) == {
        'coco_panoptic/PQ': 2.0,
        'coco_panoptic/SQ': 3.0
    }


def test_tiny_training_validates_every_exit(synthetic_cfg_options, run_tool,
                                            tmp_path):
    """A 2-iteration training with one validation: every exit's PQ/SQ/RQ is
    logged, the main exit's under the usual names, and save_best selects on
    a chosen exit."""
    proc = run_tool(
        'tools/train.py',
        PARENT,
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        *synthetic_cfg_options,
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
        'val_cfg.exits=[2,6]',
        'default_hooks.checkpoint.save_best=exit2/coco_panoptic/PQ',
        'default_hooks.checkpoint.rule=greater',
        'model.test_cfg.object_mask_thr=0.0',
        env=dict(OMP_NUM_THREADS='1'),
        timeout=600)
    assert 'Per-exit results' in proc.stdout + proc.stderr
    scalars = [
        json.loads(line)
        for line in next(tmp_path.glob('*/vis_data/scalars.json')).open()
    ]
    val = [entry for entry in scalars if 'coco_panoptic/PQ' in entry]
    assert len(val) == 1
    for k in (2, 6):
        for metric in ('PQ', 'SQ', 'RQ'):
            assert f'exit{k}/coco_panoptic/{metric}' in val[0]
    assert 'exit3/coco_panoptic/PQ' not in val[0]
    assert val[0]['coco_panoptic/PQ'] == pytest.approx(
        val[0]['exit6/coco_panoptic/PQ'])
    assert list(tmp_path.glob('best_exit2_coco_panoptic_PQ_iter_2.pth'))
