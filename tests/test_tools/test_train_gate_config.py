# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F step C through tools/train.py and tools/test.py: the gate config
trains the gate tools/eco/train_gate.py trains, resumes exactly, and its
checkpoint evaluates on a derived file.

tools/train.py and tools/test.py run as real subprocesses; train_gate.py
runs in-process through its ``main``.
"""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gate_tool_helpers import load_tool, save_depth_sensitive_derived

from proscale.eco.exit_samples import load_exit_samples, split_samples
from proscale.eco.gate_training import evaluate_gate
from proscale.models.gates import load_gate

CONFIG = 'configs/eco_m2f/eco-m2f-gate_r18_1xb4-tiny_synthetic-panoptic.py'
ITERS = 60

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def derived(tmp_path_factory) -> str:
    """A derived exit dataset of 150 images of the tiny parent (64-d gate
    inputs) whose images gain from depth with gate input channel 0."""
    gate_inputs = np.random.default_rng(1).normal(size=(150, 64))
    return save_depth_sensitive_derived(
        str(tmp_path_factory.mktemp('derived') / 'derived.npz'),
        gate_inputs.astype(np.float32) * 2 + 1)


def _cfg_options(derived: str) -> list:
    """The natural keys of a gate run (checked by --cfg-options)."""
    return [
        '--cfg-options', f'train_dataloader.dataset.ann_file={derived}',
        f'val_dataloader.dataset.ann_file={derived}',
        f'test_dataloader.dataset.ann_file={derived}', 'model.beta=0.02',
        'model.loss=soft_ce', 'model.temperature=0.05',
        'model.gate.input_levels=1', 'train_dataloader.dataset.input_levels=1',
        'train_dataloader.sampler.batch_size=32',
        f'train_cfg.max_iters={ITERS}', 'train_cfg.val_interval=30',
        'default_hooks.checkpoint.interval=20'
    ]


@pytest.fixture(scope='module')
def trained(derived, tmp_path_factory, run_tool) -> Path:
    """The work dir of an uninterrupted tools/train.py run."""
    work_dir = tmp_path_factory.mktemp('gate_run')
    proc = run_tool('tools/train.py', CONFIG, '--work-dir', work_dir,
                    *_cfg_options(derived))
    assert 'gate/accuracy' in proc.stdout + proc.stderr
    return work_dir


def _state_dict(path) -> dict:
    return torch.load(str(path), map_location='cpu')['state_dict']


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_py_gate_equals_train_gate_py(derived, trained, tmp_path):
    out = tmp_path / 'gate.pth'
    load_tool('train_gate').main([
        derived, '--beta', '0.02', '--loss', 'soft_ce', '--iters',
        str(ITERS), '--batch-size', '32', '--no-refit', '--out',
        str(out)
    ])
    _assert_same(_state_dict(trained / 'gate.pth'), _state_dict(out))
    _, meta = load_gate(str(trained / 'gate.pth'))
    assert (meta['beta'], meta['loss']) == (0.02, 'soft_ce')
    assert meta['iters'] == ITERS


def test_resume_after_an_interruption_gives_the_same_gate(
        derived, trained, tmp_path, run_tool):
    # the run interrupted after iteration 20 left its checkpoint
    shutil.copy(trained / 'iter_20.pth', tmp_path / 'iter_20.pth')
    run_tool('tools/train.py', CONFIG, '--work-dir', tmp_path, '--resume',
             tmp_path / 'iter_20.pth', *_cfg_options(derived))
    _assert_same(_state_dict(tmp_path / f'iter_{ITERS}.pth'),
                 _state_dict(trained / f'iter_{ITERS}.pth'))
    _assert_same(_state_dict(tmp_path / 'gate.pth'),
                 _state_dict(trained / 'gate.pth'))


def test_test_py_evaluates_a_gate_checkpoint(derived, trained, tmp_path,
                                             run_tool):
    proc = run_tool('tools/test.py', CONFIG, trained / f'iter_{ITERS}.pth',
                    '--work-dir', tmp_path, *_cfg_options(derived))
    figures = {
        key: float(value)
        for key, value in re.findall(r'gate/(\w+): ([-\d.]+)',
                                     proc.stdout + proc.stderr)
    }
    # the saved (folded) gate on raw features picks as the checkpoint does
    gate, _ = load_gate(str(trained / 'gate.pth'))
    _, val = split_samples(load_exit_samples(derived), 0.2, 0)
    expected = evaluate_gate(gate, val, 0.02)
    for key in ('accuracy', 'mean_depth', 'mean_quality'):
        assert figures[key] == pytest.approx(expected[key], abs=1e-4)
    assert figures['accuracy'] > 0.5
