# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F step B end to end: tools/eco/derive_exit_dataset.py on the
synthetic dataset, interrupted and resumed, and on two gloo processes."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from proscale.evaluation import load_exit_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = 'tools/eco/derive_exit_dataset.py'
EXITS = [2, 3, 4, 5, 6]
# One thread per process: results must not depend on how work is split.
ENV = dict(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
# Run the tool, SIGKILL it right after its second partial-result file and
# leave a half-written temporary file behind, as a crash mid-write would.
KILL_AFTER_TWO_CHUNKS = """
import os, runpy, signal, sys
from proscale.evaluation import exit_dataset
save = exit_dataset.ExitDataset.save
saved = []
def save_then_die(self, path):
    save(self, path)
    saved.append(path)
    if len(saved) == 2:
        stray = os.path.join(os.path.dirname(path), '.x.npz.tmp')
        with open(stray, 'wb') as f:
            f.write(b'half')
        os.kill(os.getpid(), signal.SIGKILL)
exit_dataset.ExitDataset.save = save_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


@pytest.fixture(scope='module')
def derive_args(tiny_eco_parent_checkpoint, synthetic_cfg_options):
    """Builds the tool's arguments for an output file (the tiny parent on
    the synthetic training split)."""
    config, checkpoint = tiny_eco_parent_checkpoint

    def args(out, *extra):
        return [
            config, checkpoint, '--out',
            str(out), '--work-dir',
            str(Path(out).parent / 'logs'), *extra, '--cfg-options',
            *synthetic_cfg_options
        ]

    return args


@pytest.fixture(scope='module')
def reference(derive_args, run_tool, tmp_path_factory) -> Path:
    """The dataset derived by one uninterrupted process."""
    out = tmp_path_factory.mktemp('reference') / 'derived.npz'
    run_tool(TOOL, *derive_args(out, '--save-interval', '5'), env=ENV)
    return out


def _assert_same_content(path: Path, expected: Path) -> None:
    a, b = load_exit_dataset(str(path)), load_exit_dataset(str(expected))
    for name in ('image_ids', 'exits', 'pq', 'sq', 'rq', 'gate_inputs',
                 'layer1_gate_inputs'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # The shared checkout may change between runs (git describe --dirty).
    for data in (a, b):
        data.meta.pop('code_version')
    assert a.meta == b.meta


def test_reference_dataset(reference, synthetic_data_root,
                           tiny_eco_parent_checkpoint):
    ann_file = f'{synthetic_data_root}annotations/panoptic_train.json'
    data = load_exit_dataset(
        str(reference),
        expected_exits=EXITS,
        expected_dataset=dict(split='train', ann_file=ann_file))
    image_ids = sorted(
        image['id']
        for image in json.loads(Path(ann_file).read_text())['images'])
    assert data.image_ids.tolist() == image_ids
    assert data.meta['dataset']['num_images'] == len(image_ids)
    # the pooled projected 1/32, 1/16 and 1/8 scales (64 channels each)
    assert data.gate_inputs.shape == (len(image_ids), 3 * 64)
    assert data.meta['gate_input_levels'] == 3
    assert len(np.unique(data.gate_inputs, axis=0)) == len(image_ids)
    # the same pooling of the tokens after encoder layer 1
    assert data.layer1_gate_inputs.shape == data.gate_inputs.shape
    assert not np.allclose(data.layer1_gate_inputs, data.gate_inputs)
    assert 'layer1_gate_inputs' in data.meta['gate_input']
    assert data.meta['task'] == 'panoptic'
    assert np.isfinite(data.quality('pq', 'All')).all()
    assert ((data.pq >= 0) & (data.pq <= 1) | np.isnan(data.pq)).all()
    assert data.meta['checkpoint']['path'] == tiny_eco_parent_checkpoint[1]
    assert len(data.meta['checkpoint']['sha256']) == 64
    assert 'RandomFlip' not in str(data.meta['pipeline'])
    assert not Path(f'{reference}.parts').exists()


def test_resume_after_kill_equals_uninterrupted_run(derive_args, run_tool,
                                                    reference, tmp_path):
    out = tmp_path / 'derived.npz'
    killed = subprocess.run([
        sys.executable, '-c', KILL_AFTER_TWO_CHUNKS, TOOL,
        *derive_args(out, '--save-interval', '3')
    ],
                            cwd=REPO_ROOT,
                            env={
                                **os.environ,
                                **ENV
                            },
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    parts = Path(f'{out}.parts')
    assert not out.exists()
    assert len(list(parts.glob('*.npz'))) == 2

    resumed = run_tool(
        TOOL, *derive_args(out, '--resume', '--save-interval', '4'), env=ENV)
    num_images = len(load_exit_dataset(str(reference)))
    assert (f'deriving exits {EXITS} of {num_images - 6} of {num_images} '
            'images') in resumed.stdout + resumed.stderr
    _assert_same_content(out, reference)
    assert not parts.exists()


def test_two_gloo_processes_equal_one(derive_args, run_tool, reference,
                                      tmp_path):
    out = tmp_path / 'derived.npz'
    proc = run_tool(
        TOOL,
        *derive_args(out, '--save-interval', '3'),
        '--launcher',
        'pytorch',
        env=ENV,
        nproc=2)
    assert 'on 2 rank(s)' in proc.stdout + proc.stderr
    _assert_same_content(out, reference)


def test_mismatched_resume_fails_and_keeps_output(derive_args, run_tool,
                                                  reference, tmp_path):
    out = tmp_path / 'derived.npz'
    shutil.copy(reference, out)
    before = out.read_bytes()
    refused = run_tool(
        TOOL,
        *derive_args(out, '--resume', '--exits', '2', '6'),
        env=ENV,
        returncode=None)
    assert refused.returncode != 0
    assert f"--resume: {out} was derived with different ['exits']" in (
        refused.stderr)
    assert out.read_bytes() == before


def test_checkpoint_of_another_model_is_refused(derive_args, run_tool,
                                                tmp_path):
    checkpoint = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'backbone.conv1.weight': torch.zeros(1)}),
               checkpoint)
    args = derive_args(tmp_path / 'derived.npz')
    args[1] = str(checkpoint)
    refused = run_tool(TOOL, *args, env=ENV, returncode=None)
    assert refused.returncode != 0
    assert 'size mismatch for backbone.conv1.weight' in refused.stderr
    assert not (tmp_path / 'derived.npz').exists()
