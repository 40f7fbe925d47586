# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F step C tools: train_gate.py, merge_gate.py, sweep_beta.py and a
merged gated checkpoint in tools/test.py.

train_gate, merge_gate and sweep_beta run in-process through their ``main``
(each subprocess costs an import of torch and mmdet); tools/test.py runs as
a real subprocess on the session's tiny parent.
"""
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from gate_tool_helpers import (EXITS, gated_test_predictions, load_tool,
                               save_depth_sensitive_derived)

from proscale.evaluation import load_exit_dataset
from proscale.eco.exit_samples import load_exit_samples
from proscale.eco.gate_training import train_gate
from proscale.models.gates import (ExitGate, exit_utility, hard_exit_targets,
                                   load_gate, save_gate)
from proscale.utils.checkpoint_checks import checkpoint_sha256

GATED_CONFIG = (
    'configs/eco_m2f/eco-m2f-gated_r18_1xb4-tiny_synthetic-panoptic.py')


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def derived(tmp_path_factory) -> str:
    """A derived exit dataset for the tiny parent's gate inputs (64-d per
    encoder scale, 3 scales), whose images gain from depth in proportion to
    gate input channel 0."""
    rng = np.random.default_rng(0)
    return save_depth_sensitive_derived(
        str(tmp_path_factory.mktemp('derived') / 'derived.npz'),
        rng.normal(size=(200, 3 * 64)).astype(np.float32),
        gate_input_levels=3,
        layer1_gate_inputs=rng.normal(size=(200, 3 * 64)))


@pytest.fixture(scope='module')
def parent_derived(derived, tiny_eco_parent_checkpoint,
                   tmp_path_factory) -> str:
    """:func:`derived`, recorded as derived from the session's tiny parent
    (``derived`` names another parent)."""
    parent = tiny_eco_parent_checkpoint[1]
    dataset = load_exit_dataset(derived)
    dataset.meta['checkpoint'] = dict(
        path=parent, sha256=checkpoint_sha256(parent))
    path = str(tmp_path_factory.mktemp('parent_derived') / 'derived.npz')
    dataset.save(path)
    return path


def test_train_gate_with_beta(derived, tmp_path, capsys):
    gate_file = tmp_path / 'gate.pth'
    figures = load_tool('train_gate').main([
        derived, '--beta', '0.02', '--out',
        str(gate_file), '--iters', '150', '--exit-gflops', '10', '11', '12',
        '13', '14', '--json',
        str(tmp_path / 'gate.json')
    ])
    out = capsys.readouterr().out
    for text in ('gate accuracy', 'exit histogram', 'expected encoder depth',
                 'expected GFLOPs',
                 'held-out split, gate trained on the rest (40 images)',
                 'saved gate, on its training images (all, refit) '
                 '(200 images)'):
        assert text in out
    assert f"gate accuracy           {figures['val']['accuracy']:.1%}" in out
    # the gate's own cost (its head: 64 x 5 multiply-adds) is counted
    assert figures['gate_gflops'] == pytest.approx(64 * 5 / 1e9)
    assert figures['val']['mean_gflops'] == pytest.approx(
        figures['val']['mean_depth'] + 8 + figures['gate_gflops'])
    gate, meta = load_gate(str(gate_file))
    # the saved gate is refit on all images with the chosen beta
    refit = train_gate(load_exit_samples(derived), 0.02, iters=150)
    torch.testing.assert_close(gate.head.weight, refit.head.weight)
    assert gate.exits == EXITS and gate.in_channels == 64
    assert meta['beta'] == 0.02 and meta['loss'] == 'hard_ce'
    assert meta['derived']['checkpoint']['path'] == 'parent.pth'
    assert json.loads((tmp_path / 'gate.json').read_text())['beta'] == 0.02


def test_train_gate_for_a_depth_budget(derived, tmp_path, capsys):
    figures = load_tool('train_gate').main([
        derived, '--target-depth', '4', '--out',
        str(tmp_path / 'gate.pth'), '--iters', '60', '--search-steps', '3',
        '--loss', 'soft_ce', '--hidden-channels', '8'
    ])
    assert 'beta search for a budget of 4 layers' in capsys.readouterr().out
    assert figures['val']['mean_depth'] <= 4
    assert figures['beta'] in [trial['beta'] for trial in figures['trials']]
    assert load_gate(str(tmp_path / 'gate.pth'))[0].hidden_channels == 8


def test_train_gate_after_the_first_encoder_layer(derived, tmp_path, capsys):
    gate_file = str(tmp_path / 'gate.pth')
    load_tool('train_gate').main([
        derived, '--beta', '0.02', '--out', gate_file, '--iters', '30',
        '--gate-input-depth', '1'
    ])
    gate, meta = load_gate(gate_file)
    assert gate.input_depth == 1 and meta['gate_cfg']['input_depth'] == 1
    samples = load_exit_samples(derived, input_depth=1)
    torch.testing.assert_close(
        gate.head.weight,
        train_gate(samples, 0.02, iters=30, input_depth=1).head.weight)
    old = load_exit_dataset(derived)
    old.layer1_gate_inputs = None
    old_file = str(tmp_path / 'old.npz')
    old.save(old_file)
    code, err = _exit_code_and_error('train_gate', [
        old_file, '--beta', '0.02', '--out', gate_file + '.x',
        '--gate-input-depth', '1'
    ], capsys)
    assert code == 2 and 'no layer1_gate_inputs' in err
    assert not Path(gate_file + '.x').exists()


def test_train_gate_chooses_beta_and_iterations(derived, tmp_path, capsys):
    figures = load_tool('train_gate').main([
        derived, '--target-depth', '4', '--out',
        str(tmp_path / 'gate.pth'), '--iters', '150', '2', '--search-steps',
        '2'
    ])
    assert 'iters 2      cost' in capsys.readouterr().out
    assert sorted({t['iters'] for t in figures['trials']}) == [2, 150]
    chosen = [
        t for t in figures['trials']
        if (t['beta'], t['iters']) == (figures['beta'], figures['iters'])
    ]
    assert len(chosen) == 1 and chosen[0]['cost'] <= 4
    assert chosen[0]['quality'] == max(t['quality']
                                       for t in figures['trials']
                                       if t['cost'] <= 4)
    # the saved gate is refit on all images with the chosen beta and iters
    gate, meta = load_gate(str(tmp_path / 'gate.pth'))
    refit = train_gate(
        load_exit_samples(derived), figures['beta'], iters=figures['iters'])
    torch.testing.assert_close(gate.head.weight, refit.head.weight)
    assert meta['figures']['iters'] == figures['iters']


def test_train_gate_input_errors(derived, tmp_path, capsys):
    train_gate = load_tool('train_gate')
    with pytest.raises(SystemExit) as error:
        train_gate.main([
            derived, '--target-gflops', '12', '--out',
            str(tmp_path / 'gate.pth')
        ])
    assert error.value.code == 2
    assert '--target-gflops needs per-exit GFLOPs' in capsys.readouterr().err
    (tmp_path / 'corrupt.npz').write_bytes(b'not a zip file')
    for name in ('missing.npz', 'corrupt.npz'):
        with pytest.raises(SystemExit) as error:
            train_gate.main([
                str(tmp_path / name), '--beta', '0.1', '--out',
                str(tmp_path / 'gate.pth')
            ])
        assert error.value.code == 2
        assert name in capsys.readouterr().err
    assert not (tmp_path / 'gate.pth').exists()


def test_merged_checkpoint_runs_in_test_py(tiny_eco_parent_checkpoint,
                                           synthetic_cfg_options, run_tool,
                                           parent_derived, tmp_path):
    _, parent = tiny_eco_parent_checkpoint
    gate_file = str(tmp_path / 'gate.pth')
    merged = str(tmp_path / 'merged.pth')
    load_tool('train_gate').main([
        parent_derived, '--beta', '0.005', '--out', gate_file, '--iters',
        '100'
    ])
    load_tool('merge_gate').main(
        [parent, gate_file, '--out', merged, '--config', GATED_CONFIG])
    merged_state = torch.load(merged)['state_dict']
    assert bool(merged_state['gate.trained'])
    torch.testing.assert_close(merged_state['gate.head.weight'],
                               load_gate(gate_file)[0].head.weight)

    gated_test_predictions(run_tool, GATED_CONFIG, merged, tmp_path,
                           synthetic_cfg_options, 'coco_panoptic/PQ')


def test_sweep_beta(tiny_eco_parent_checkpoint, synthetic_cfg_options,
                    parent_derived, tmp_path, capsys):
    config, parent = tiny_eco_parent_checkpoint
    out_dir = tmp_path / 'sweep'
    rows = load_tool('sweep_beta').main([
        config, parent, parent_derived, '--betas', '1', '0', '--out-dir',
        str(out_dir), '--iters', '100', '--flops-images', '1',
        '--gate-input-levels', '1', '3', '--gate-input-depths', '0', '1',
        '--cfg-options', *synthetic_cfg_options
    ])
    assert 'exit6 (full)' in capsys.readouterr().out
    table = json.loads((out_dir / 'sweep.json').read_text())
    assert [row['policy'] for row in table['rows']] == [
        'exit2', 'exit3', 'exit4', 'exit5', 'exit6', 'beta0', 'beta1',
        'l1-beta0', 'l1-beta1', 'in3-beta0', 'in3-beta1', 'in3-l1-beta0',
        'in3-l1-beta1', 'oracle'
    ]
    by_policy = {row['policy']: row for row in rows}
    assert by_policy['exit6']['full_model']
    assert by_policy['exit4']['mean_depth'] == 4
    gflops = [by_policy[f'exit{k}']['gflops'] for k in EXITS]
    assert all(a < b for a, b in zip(gflops, gflops[1:]))
    # beta 1 makes every target the shallowest exit: the gated model is
    # exit 2 plus the gate, with exactly exit 2's dataset-level PQ
    shallow = by_policy['beta1']
    assert shallow['exit_shares'][2] == 1.0
    assert shallow['PQ'] == by_policy['exit2']['PQ']
    assert shallow['gflops'] == pytest.approx(by_policy['exit2']['gflops'] +
                                              table['gate_gflops']['beta1'])
    assert 0 < table['gate_gflops']['beta1'] < 0.01 * gflops[0]
    # the barely trained parent segments nothing: every image's PQ ties at
    # every exit, so the oracle takes the shallowest exit, on the curve
    oracle = by_policy['oracle']
    assert oracle['kind'] == 'oracle' and oracle['exit_shares'][2] == 1.0
    assert oracle['PQ'] == by_policy['exit2']['PQ']
    assert oracle['gflops'] == pytest.approx(by_policy['exit2']['gflops'])
    assert oracle['quality_over_fixed'] == pytest.approx(0)
    assert 'fixed_curve_quality' in shallow
    assert (out_dir / 'sweep.png').stat().st_size > 0
    assert load_gate(by_policy['beta0']['gate_file'])[1]['beta'] == 0
    # the 3-scale gate reads the 1/32, 1/16 and 1/8 tokens
    wide = load_gate(by_policy['in3-beta0']['gate_file'])[0]
    assert (wide.in_channels, wide.input_levels) == (3 * 64, 3)
    assert by_policy['in3-beta0']['input_levels'] == 3
    assert by_policy['in3-beta1']['exit_shares'][2] == 1.0
    assert table['gate_gflops']['in3-beta1'] == pytest.approx(
        3 * table['gate_gflops']['beta1'])
    # the gate after encoder layer 1: that layer is part of every exit, so
    # it costs the gate's head alone, as the authors' gate
    after_layer1 = load_gate(by_policy['l1-beta0']['gate_file'])[0]
    assert (after_layer1.input_depth, after_layer1.input_levels) == (1, 1)
    assert by_policy['l1-beta1']['input_depth'] == 1
    assert by_policy['l1-beta1']['exit_shares'][2] == 1.0
    assert by_policy['l1-beta1']['gflops'] == pytest.approx(
        shallow['gflops'])


def _exit_code_and_error(tool: str, argv: list, capsys) -> tuple:
    """Run a tool's ``main`` that must fail; return its code and stderr."""
    with pytest.raises(SystemExit) as error:
        load_tool(tool).main(argv)
    return error.value.code, capsys.readouterr().err


def test_merge_gate_refuses_a_gate_of_another_parent(
        tiny_eco_parent_checkpoint, derived, tmp_path, capsys):
    _, parent = tiny_eco_parent_checkpoint
    gate_file, merged = str(tmp_path / 'gate.pth'), tmp_path / 'merged.pth'
    load_tool('train_gate').main(
        [derived, '--beta', '0.005', '--out', gate_file, '--iters', '20'])
    argv = [parent, gate_file, '--out', str(merged)]
    code, err = _exit_code_and_error('merge_gate', argv, capsys)
    assert code == 2 and 'Traceback' not in err
    assert (f'error: gate file {gate_file} was derived from the parent '
            f'checkpoint parent.pth (sha256 000000000000), not from {parent}'
            ) in err and '--force' in err
    assert not merged.exists()
    with mock.patch('proscale.eco.provenance.print_log') as print_log:
        load_tool('merge_gate').main(argv + ['--force'])
    assert merged.is_file()
    assert 'used anyway (--force)' in print_log.call_args.args[0]


def test_merge_gate_names_a_gate_with_other_exits(tiny_eco_parent_checkpoint,
                                                  tmp_path, capsys):
    _, parent = tiny_eco_parent_checkpoint
    gate_file, merged = str(tmp_path / 'gate.pth'), tmp_path / 'merged.pth'
    gate = ExitGate(exits=(2, 4, 6), in_channels=64)
    save_gate(
        gate,
        dict(
            gate_cfg=dict(type='ExitGate', exits=[2, 4, 6], in_channels=64),
            derived=dict(
                checkpoint=dict(
                    path=parent, sha256=checkpoint_sha256(parent)))),
        gate_file)
    code, err = _exit_code_and_error(
        'merge_gate',
        [parent, gate_file, '--out',
         str(merged), '--config', GATED_CONFIG], capsys)
    errors = [line for line in err.splitlines() if line.startswith('error')]
    assert code == 2 and len(errors) == 1 and 'Traceback' not in err
    assert 'does not match the trained gate in' in errors[0]
    assert "'exits': [2, 4, 6]" in errors[0]
    assert not merged.exists()


def test_sweep_beta_refuses_data_of_another_parent(tiny_eco_parent_checkpoint,
                                                   derived, tmp_path, capsys):
    config, parent = tiny_eco_parent_checkpoint
    out_dir = tmp_path / 'sweep'
    code, err = _exit_code_and_error('sweep_beta', [
        config, parent, derived, '--betas', '0', '--out-dir',
        str(out_dir)
    ], capsys)
    assert code == 2 and 'Traceback' not in err
    assert f'error: derived dataset {derived} was derived from the parent ' \
        'checkpoint parent.pth' in err
    assert not out_dir.exists()


@pytest.mark.heavy
def test_gate_sends_synthetic_images_to_different_exits(
        synthetic_cfg_options, run_tool, tmp_path):
    """End to end on the synthetic dataset: a tiny parent trained long
    enough to segment some of its training images, the derived dataset of
    its training split, and a gate trained on it.

    The default run's parent (a few iterations) segments nothing, so every
    per-image PQ is 0 and every target is the shallowest exit; the fast
    variant of this check is ``test_gate_learns_the_difficulty`` in
    tests/test_engine/test_gate_training.py.
    """
    config = ('configs/eco_m2f/'
              'eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py')
    run_tool(
        'tools/train.py',
        config,
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        *synthetic_cfg_options,
        'val_dataloader=None',
        'val_cfg=None',
        'val_evaluator=None',
        'custom_hooks.0.seed=0',
        timeout=3600)
    derived = str(tmp_path / 'derived.npz')
    run_tool(
        'tools/eco/derive_exit_dataset.py',
        config,
        str(tmp_path / 'iter_300.pth'),
        '--out',
        derived,
        '--work-dir',
        str(tmp_path / 'derive'),
        '--cfg-options',
        *synthetic_cfg_options,
        # the briefly trained parent's scores rarely reach the default 0.8
        'model.test_cfg.object_mask_thr=0.3',
        timeout=1800)
    samples = load_exit_samples(derived)
    targets = hard_exit_targets(
        exit_utility(samples.quality, samples.exits, 0.0))
    majority = torch.bincount(targets).max().item() / len(targets)
    assert majority < 1, 'the parent gives every image the same best exit'

    gate = train_gate(samples, beta=0.0)
    choice = gate(samples.gate_inputs).argmax(dim=1)
    assert len(set(choice.tolist())) >= 2
    assert (choice == targets).double().mean().item() > majority
