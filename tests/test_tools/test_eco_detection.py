# Copyright (c) The proscale Authors. All rights reserved.
"""The tiny ECO-DINO parent through ``tools/train.py`` (weighted stochastic
depth with ``ExitSamplingHook``, every exit validated) and
``tools/eco/eval_exits.py`` (box AP per exit in one pass)."""
import json

import pytest

PARENT_CONFIG = ('configs/proscale_detr/eco-dino-parent_r18_1xb4-tiny_'
                 'synthetic-detection.py')
EXITS = ['2', '3', '4', '5', '6']


@pytest.fixture(scope='module')
def parent(tmp_path_factory, run_tool, synthetic_detection_cfg_options):
    """Work dir of a 3-iteration training of the tiny ECO-DINO parent."""
    work_dir = tmp_path_factory.mktemp('eco_dino_parent')
    run_tool(
        'tools/train.py',
        PARENT_CONFIG,
        '--work-dir',
        work_dir,
        '--cfg-options',
        *synthetic_detection_cfg_options,
        'train_cfg.max_iters=3',
        'train_cfg.val_interval=3',
        'default_hooks.checkpoint.interval=3',
        'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=2',
        'custom_hooks.0.seed=0',
        env=dict(OMP_NUM_THREADS='1'),
        timeout=600)
    return work_dir


def test_parent_trains_with_exit_sampling(parent):
    assert (parent / 'iter_3.pth').is_file()
    records = [
        json.loads(line)
        for line in sorted(parent.glob('*/vis_data/scalars.json'))
        [-1].read_text().strip().splitlines()
    ]
    drawn = [record['exit'] for record in records if 'exit' in record]
    assert len(drawn) == 3 and all(2 <= k <= 6 for k in drawn)
    val = records[-1]
    for k in EXITS:
        assert 0 <= val[f'exit{k}/coco/bbox_mAP'] <= 1
    # the deepest exit's metrics also under the usual names
    assert val['coco/bbox_mAP'] == val['exit6/coco/bbox_mAP']


def test_eval_exits_reports_box_ap_per_exit(parent, run_tool, tmp_path,
                                            synthetic_detection_cfg_options):
    out = tmp_path / 'exits.json'
    proc = run_tool(
        'tools/eco/eval_exits.py',
        PARENT_CONFIG,
        parent / 'iter_3.pth',
        '--json',
        out,
        '--flops-images',
        '1',
        '--work-dir',
        tmp_path,
        '--cfg-options',
        *synthetic_detection_cfg_options,
        env=dict(OMP_NUM_THREADS='1'))
    exits = json.loads(out.read_text())['exits']
    assert list(exits) == EXITS
    for metrics in exits.values():
        assert 0 <= metrics['coco/bbox_mAP'] <= 1
    encoder = [exits[k]['gflops']['encoder'] for k in EXITS]
    # every exit adds one identical encoder layer
    steps = [b - a for a, b in zip(encoder, encoder[1:])]
    assert min(steps) > 0
    assert max(steps) == pytest.approx(min(steps), rel=1e-6)
    assert len({exits[k]['gflops']['backbone'] for k in EXITS}) == 1

    lines = proc.stdout.strip().splitlines()
    assert lines[-6].split()[:2] == ['exit', 'bbox_mAP']
    assert [line.split()[0] for line in lines[-5:]] == EXITS
