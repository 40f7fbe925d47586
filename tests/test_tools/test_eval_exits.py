# Copyright (c) The proscale Authors. All rights reserved.
import json

import pytest


def test_eval_exits_reports_every_exit(tiny_eco_parent_checkpoint,
                                       synthetic_cfg_options, run_tool,
                                       tmp_path):
    config, checkpoint = tiny_eco_parent_checkpoint
    out = tmp_path / 'exits.json'
    proc = run_tool(
        'tools/eco/eval_exits.py',
        config,
        checkpoint,
        '--json',
        str(out),
        '--flops-images',
        '1',
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        *synthetic_cfg_options,
        env=dict(OMP_NUM_THREADS='1'))
    results = json.loads(out.read_text())
    assert results['checkpoint'] == checkpoint
    exits = results['exits']
    assert list(exits) == ['2', '3', '4', '5', '6']
    for metrics in exits.values():
        for name in ('PQ', 'SQ', 'RQ'):
            assert 0 <= metrics[f'coco_panoptic/{name}'] <= 100
        assert 'coco/segm_mAP' in metrics
    encoder = [exits[k]['gflops']['encoder'] for k in exits]
    assert all(a < b for a, b in zip(encoder, encoder[1:]))
    # every exit adds one identical encoder layer
    steps = [b - a for a, b in zip(encoder, encoder[1:])]
    assert max(steps) == pytest.approx(min(steps), rel=1e-6)
    assert len({exits[k]['gflops']['backbone'] for k in exits}) == 1

    lines = proc.stdout.strip().splitlines()
    header = lines[-6].split()
    assert header[:4] == ['exit', 'PQ', 'SQ', 'RQ'] and 'GFLOPs' in header
    assert [line.split()[0] for line in lines[-5:]] == list(exits)


def test_eval_exits_with_the_oracle(tiny_eco_parent_checkpoint,
                                    synthetic_cfg_options, run_tool,
                                    tmp_path):
    config, checkpoint = tiny_eco_parent_checkpoint
    out, plot = tmp_path / 'exits.json', tmp_path / 'exits.png'
    proc = run_tool(
        'tools/eco/eval_exits.py',
        config,
        checkpoint,
        '--exits',
        '2',
        '6',
        '--oracle',
        '--plot',
        str(plot),
        '--json',
        str(out),
        '--flops-images',
        '2',
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        *synthetic_cfg_options,
        env=dict(OMP_NUM_THREADS='1'))
    results = json.loads(out.read_text())
    assert list(results['exits']) == ['2', '6']
    rows = {row['policy']: row for row in results['policies']}
    assert list(rows) == ['exit2', 'exit6', 'oracle']
    # the fixed exits of both loops agree
    assert rows['exit2']['PQ'] == results['exits']['2']['coco_panoptic/PQ']
    oracle = rows['oracle']
    assert sum(oracle['exit_shares'].values()) == pytest.approx(1)
    assert rows['exit2']['gflops'] <= oracle['gflops'] <= rows['exit6'][
        'gflops']
    assert 'quality_over_fixed' in oracle and 'vs fixed' in proc.stdout
    assert plot.stat().st_size > 0


def test_plot_needs_the_oracle(run_tool, tmp_path):
    proc = run_tool(
        'tools/eco/eval_exits.py',
        'config.py',
        'model.pth',
        '--plot',
        str(tmp_path / 'x.png'),
        returncode=2)
    assert '--plot needs --oracle' in proc.stderr
