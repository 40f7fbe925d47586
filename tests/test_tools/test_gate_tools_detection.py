# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F step C for detection: train_gate.py on the box AP of a tiny
EcoDINO's derived set, merge_gate.py into the parent, the merged gated
checkpoint in tools/test.py, and sweep_beta.py with box AP."""
import json

import pytest
import torch
from gate_tool_helpers import EXITS, gated_test_predictions, load_tool

from proscale.models.gates import load_gate

GATED_CONFIG = ('configs/proscale_detr/eco-dino-gated_r18_1xb4-tiny_'
                'synthetic-detection.py')


pytestmark = pytest.mark.usefixtures('single_thread')


def test_train_merge_and_test_gated_dino(tiny_eco_dino_checkpoint,
                                         tiny_eco_dino_derived,
                                         synthetic_detection_cfg_options,
                                         run_tool, tmp_path, capsys):
    _, parent = tiny_eco_dino_checkpoint
    gate_file = str(tmp_path / 'gate.pth')
    merged = str(tmp_path / 'merged.pth')
    figures = load_tool('train_gate').main([
        tiny_eco_dino_derived, '--beta', '0.005', '--metric', 'ap50',
        '--out', gate_file, '--iters', '50'
    ])
    assert 0 <= figures['val']['mean_quality'] <= 1
    gate, meta = load_gate(gate_file)
    assert (meta['metric'], meta['group']) == ('ap50', 'All')
    assert (gate.exits, gate.in_channels, gate.input_levels) == (EXITS, 256,
                                                                 1)
    load_tool('merge_gate').main(
        [parent, gate_file, '--out', merged, '--config', GATED_CONFIG])
    assert bool(torch.load(merged)['state_dict']['gate.trained'])

    gated_test_predictions(run_tool, GATED_CONFIG, merged, tmp_path,
                           synthetic_detection_cfg_options, 'coco/bbox_mAP')

    # GFLOPs of the gated model: each image at its exit, plus the gate head
    get_flops = load_tool('get_flops', 'analysis').main
    gated = get_flops([
        GATED_CONFIG, '--checkpoint', merged, '--num-images', '2',
        '--cfg-options', *synthetic_detection_cfg_options
    ])
    fixed = [
        get_flops([
            GATED_CONFIG, '--num-images', '2', '--cfg-options',
            *synthetic_detection_cfg_options, 'model.gate=None',
            f'model.test_cfg.exit_layer={k}'
        ])['total'] for k in (2, 6)
    ]
    assert fixed[0] < gated['total'] < fixed[1] + 1e-4


def test_train_gate_metric_follows_the_file(tiny_eco_dino_derived, tmp_path,
                                            capsys):
    for argv, message in (
        (['--metric', 'pq'], "not 'pq' of 'All'"),
        (['--group', 'Things'], "not 'ap' of 'Things'"),
        (['--gate-input-depth', '1'], 'no layer1_gate_inputs'),
        (['--gate-input-levels', '5'], 'the file holds 4'),
    ):
        with pytest.raises(SystemExit) as error:
            load_tool('train_gate').main([
                tiny_eco_dino_derived, '--beta', '0', '--out',
                str(tmp_path / 'gate.pth'), *argv
            ])
        assert error.value.code != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / 'gate.pth').exists()
    # four scales: 1/64, 1/32, 1/16 and 1/8
    load_tool('train_gate').main([
        tiny_eco_dino_derived, '--beta', '0', '--out',
        str(tmp_path / 'gate.pth'), '--gate-input-levels', '4', '--iters',
        '10'
    ])
    assert load_gate(str(tmp_path / 'gate.pth'))[0].in_channels == 4 * 256


def test_sweep_beta_with_box_ap(tiny_eco_dino_checkpoint,
                                tiny_eco_dino_derived,
                                synthetic_detection_cfg_options, tmp_path,
                                capsys):
    config, parent = tiny_eco_dino_checkpoint
    out_dir = tmp_path / 'sweep'
    rows = load_tool('sweep_beta').main([
        config, parent, tiny_eco_dino_derived, '--betas', '1', '0',
        '--out-dir',
        str(out_dir), '--iters', '100', '--flops-images', '1',
        '--gate-input-levels', '1', '4', '--cfg-options',
        *synthetic_detection_cfg_options
    ])
    assert 'exit6 (full)' in capsys.readouterr().out
    table = json.loads((out_dir / 'sweep.json').read_text())
    assert [row['policy'] for row in table['rows']] == [
        'exit2', 'exit3', 'exit4', 'exit5', 'exit6', 'beta0', 'beta1',
        'in4-beta0', 'in4-beta1', 'oracle'
    ]
    by_policy = {row['policy']: row for row in rows}
    # beta 1 sends every image to the shallowest exit: exit 2's box AP
    shallow = by_policy['beta1']
    assert shallow['exit_shares'][2] == 1.0
    assert shallow['bbox_mAP'] == by_policy['exit2']['bbox_mAP']
    assert shallow['gflops'] == pytest.approx(by_policy['exit2']['gflops'] +
                                              table['gate_gflops']['beta1'])
    # the oracle picks each image's best own box AP: never below exit 2's
    # per-image AP, and the row holds a dataset-level box AP in percent
    oracle = by_policy['oracle']
    assert oracle['kind'] == 'oracle'
    assert 0 <= oracle['bbox_mAP'] <= 100
    assert 'quality_over_fixed' in oracle
    assert (out_dir / 'sweep.png').stat().st_size > 0
