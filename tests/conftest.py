# Copyright (c) The proscale Authors. All rights reserved.
"""Fixtures shared by the whole test suite.

- ``synthetic_data_root`` (session): a small synthetic panoptic dataset
  (:data:`SYNTHETIC_NUM_TRAIN` / :data:`SYNTHETIC_NUM_VAL` images of
  :data:`SYNTHETIC_IMAGE_SIZE` pixels), generated once per test session.
- ``synthetic_cfg_options`` (session): ``--cfg-options`` items that point a
  config based on ``configs/_base_/datasets/synthetic_panoptic.py`` at that
  dataset (data roots of all dataloaders and the evaluators' files);
  ``synthetic_cfg_overrides`` is the same as a dict, for
  ``Config.merge_from_dict``; ``make_synthetic_cfg_options(data_root)`` builds
  the items for another dataset root.
- ``run_tool``: runs a repository script (e.g. ``tools/train.py``) as a real
  subprocess, the way a user does, or as a torchrun job of several processes.
- ``free_port``: a free local TCP port (for a process group's master).
- ``single_thread`` (module): torch on one thread for a module's tests.
- ``run_tool_in_process``: runs a repository script in the test process (no
  interpreter start-up and imports: much cheaper) for runs that end early,
  such as input errors; returns the exit status and the captured stderr.
- ``run_main`` (session): runs a repository script in the test process and
  lets its ``SystemExit`` through (e.g. to prepare data in a fixture).
"""
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple
from unittest import mock

import pytest

# proscale first, before torch: the tests' OpenMP threads wait passively
# (proscale.openmp_env), as the tools' do.
from proscale.datasets import generate_synthetic_panoptic  # isort: skip
from proscale.utils import torch_threads  # isort: skip
from mmengine.registry import DefaultScope

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_NUM_TRAIN = 16
SYNTHETIC_NUM_VAL = 8
SYNTHETIC_IMAGE_SIZE = 64


@pytest.fixture(autouse=True)
def isolated_default_scope():
    """Run each test with mmdet as default scope and restore it afterwards.

    Tests that build mmseg models switch mmengine's global default scope;
    without this, later tests would look mmdet modules up in mmseg's
    registries.
    """
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture(scope='module')
def single_thread() -> Iterator[None]:
    """Run a module's tests on one torch thread (restored afterwards): the
    tiny test models run much faster so on a small, busy machine."""
    with torch_threads(1):
        yield


@pytest.fixture(scope='session')
def synthetic_data_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Root (with a trailing slash) of a small synthetic panoptic dataset."""
    root = tmp_path_factory.mktemp('synthetic') / 'synthetic'
    generate_synthetic_panoptic(
        str(root),
        num_train=SYNTHETIC_NUM_TRAIN,
        num_val=SYNTHETIC_NUM_VAL,
        seed=0,
        image_size=SYNTHETIC_IMAGE_SIZE)
    return f'{root}/'


def synthetic_overrides(data_root: str) -> Dict[str, str]:
    """Config keys to point a synthetic-panoptic config at ``data_root``.

    Args:
        data_root (str): Dataset root, ending with a slash.

    Returns:
        dict: Dotted config keys to values.
    """
    overrides = {
        f'{loader}.dataset.data_root': data_root
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    }
    for evaluator in ('val_evaluator', 'test_evaluator'):
        overrides.update({
            f'{evaluator}.0.ann_file':
            f'{data_root}annotations/panoptic_val.json',
            f'{evaluator}.0.seg_prefix':
            f'{data_root}annotations/panoptic_val/',
            f'{evaluator}.1.ann_file':
            f'{data_root}annotations/instances_val.json',
        })
    return overrides


@pytest.fixture(scope='session')
def synthetic_cfg_overrides(synthetic_data_root: str) -> Dict[str, str]:
    """:func:`synthetic_overrides` for the session's synthetic dataset."""
    return synthetic_overrides(synthetic_data_root)


def _synthetic_cfg_options(data_root: str) -> List[str]:
    """``key=value`` items of :func:`synthetic_overrides` for the CLI."""
    return [
        f'{key}={value}'
        for key, value in synthetic_overrides(data_root).items()
    ]


@pytest.fixture(scope='session')
def make_synthetic_cfg_options() -> Callable[[str], List[str]]:
    """Return ``f(data_root) -> ['key=value', ...]`` for ``--cfg-options``."""
    return _synthetic_cfg_options


@pytest.fixture(scope='session')
def synthetic_cfg_options(synthetic_data_root: str) -> List[str]:
    """``--cfg-options`` items for the session's synthetic dataset."""
    return _synthetic_cfg_options(synthetic_data_root)


@pytest.fixture(scope='session')
def synthetic_detection_cfg_options(synthetic_data_root: str) -> List[str]:
    """``--cfg-options`` items pointing a tiny detection config
    (``configs/_base_/datasets/synthetic_detection.py``) at the session's
    synthetic dataset and its COCO instances files."""
    options = [
        f'{loader}.dataset.data_root={synthetic_data_root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
    return options + [
        f'{evaluator}.ann_file={synthetic_data_root}'
        'annotations/instances_val.json'
        for evaluator in ('val_evaluator', 'test_evaluator')
    ]


def _free_port() -> int:
    """Return a TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    return _free_port()


def _run_tool(script: str,
              *args: str,
              timeout: float = 300,
              returncode: Optional[int] = 0,
              env: Optional[Dict[str, str]] = None,
              nproc: Optional[int] = None) -> subprocess.CompletedProcess:
    """Run a repository script with this interpreter from the repo root.

    Args:
        script (str): Path relative to the repository root.
        *args (str): Command-line arguments.
        timeout (float): Seconds before the process is killed.
        returncode (int, optional): Expected exit status, checked with the
            process's output in the failure message; None skips the check.
        env (dict, optional): Extra environment variables. The tools run
            single-threaded (``OMP_NUM_THREADS=1``) unless this overrides it:
            test inputs are tiny and the test machine is small and shared.
        nproc (int, optional): Run the script as a torchrun job of this
            many local processes (``python -m torch.distributed.run``, on a
            free port); pass ``--launcher pytorch`` in ``args``. None runs
            one plain process.

    Returns:
        subprocess.CompletedProcess: With ``stdout`` and ``stderr`` as text.
    """
    torchrun = [] if nproc is None else [
        '-m', 'torch.distributed.run', '--nproc_per_node',
        str(nproc), '--master_port',
        str(_free_port())
    ]
    proc = subprocess.run([sys.executable, *torchrun, script, *map(str, args)],
                          cwd=REPO_ROOT,
                          env={
                              **os.environ, 'OMP_NUM_THREADS': '1',
                              **(env or {})
                          },
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    if returncode is not None:
        assert proc.returncode == returncode, (
            f'{script} exited with {proc.returncode}, expected {returncode}'
            f'\n--- stdout (tail) ---\n{proc.stdout[-3000:]}'
            f'\n--- stderr (tail) ---\n{proc.stderr[-5000:]}')
    return proc


@pytest.fixture(scope='session')
def run_tool() -> Callable[..., subprocess.CompletedProcess]:
    """Return :func:`_run_tool`: ``run_tool(script, *args, timeout=...,
    nproc=...)``."""
    return _run_tool


# --- ECO-M2F: a briefly trained tiny parent ---------------------------------
TINY_ECO_PARENT_CONFIG = (
    'configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py')
TINY_ECO_PARENT_ITERS = 4


@pytest.fixture(scope='session')
def tiny_eco_parent_checkpoint(tmp_path_factory: pytest.TempPathFactory,
                               synthetic_cfg_options: List[str],
                               run_tool: Callable) -> tuple:
    """Train the tiny synthetic ECO-M2F parent for a few iterations.

    Runs ``tools/train.py`` (with ``ExitSamplingHook``, no validation) on the
    session's synthetic dataset.

    Returns:
        tuple[str, str]: The config path (relative to the repository root,
        still reading ``data/synthetic/``: pass ``synthetic_cfg_options``
        when using it) and the absolute checkpoint path.
    """
    work_dir = tmp_path_factory.mktemp('tiny_eco_parent')
    run_tool(
        'tools/train.py',
        TINY_ECO_PARENT_CONFIG,
        '--work-dir',
        str(work_dir),
        '--cfg-options',
        *synthetic_cfg_options,
        f'train_cfg.max_iters={TINY_ECO_PARENT_ITERS}',
        'val_dataloader=None',
        'val_cfg=None',
        'val_evaluator=None',
        'custom_hooks.0.seed=0',
        env=dict(OMP_NUM_THREADS='1'),
        timeout=600)
    checkpoint = work_dir / f'iter_{TINY_ECO_PARENT_ITERS}.pth'
    assert checkpoint.is_file(), f'no checkpoint in {work_dir}'
    return TINY_ECO_PARENT_CONFIG, str(checkpoint)


# --- ECO-DINO: a tiny parent after one iteration and its derived set -------
TINY_ECO_DINO_CONFIG = ('configs/proscale_detr/eco-dino-parent_r18_1xb4-tiny_'
                        'synthetic-detection.py')


@pytest.fixture(scope='session')
def tiny_eco_dino_checkpoint(tmp_path_factory: pytest.TempPathFactory,
                             synthetic_detection_cfg_options: List[str],
                             run_tool: Callable) -> tuple:
    """Train the tiny synthetic ECO-DINO parent for one iteration.

    Returns:
        tuple[str, str]: The config path (relative to the repository root;
        pass ``synthetic_detection_cfg_options`` when using it) and the
        absolute checkpoint path.
    """
    work_dir = tmp_path_factory.mktemp('tiny_eco_dino')
    run_tool(
        'tools/train.py',
        TINY_ECO_DINO_CONFIG,
        '--work-dir',
        str(work_dir),
        '--cfg-options',
        *synthetic_detection_cfg_options,
        'train_cfg.max_iters=1',
        'train_dataloader.batch_size=2',
        'val_dataloader=None',
        'val_cfg=None',
        'val_evaluator=None',
        'custom_hooks.0.seed=0',
        env=dict(OMP_NUM_THREADS='1'),
        timeout=600)
    checkpoint = work_dir / 'iter_1.pth'
    assert checkpoint.is_file(), f'no checkpoint in {work_dir}'
    return TINY_ECO_DINO_CONFIG, str(checkpoint)


@pytest.fixture(scope='session')
def tiny_eco_dino_derived(tmp_path_factory: pytest.TempPathFactory,
                          tiny_eco_dino_checkpoint: tuple,
                          synthetic_detection_cfg_options: List[str],
                          run_tool: Callable) -> str:
    """The exit dataset of the synthetic training split derived with
    ``tools/eco/derive_exit_dataset.py`` from
    :func:`tiny_eco_dino_checkpoint` (chunks of 5 images)."""
    config, checkpoint = tiny_eco_dino_checkpoint
    out = tmp_path_factory.mktemp('tiny_eco_dino_derived') / 'derived.npz'
    run_tool(
        'tools/eco/derive_exit_dataset.py',
        config,
        checkpoint,
        '--out',
        str(out),
        '--save-interval',
        '5',
        '--work-dir',
        str(out.parent / 'logs'),
        '--cfg-options',
        *synthetic_detection_cfg_options,
        env=dict(OMP_NUM_THREADS='1'),
        timeout=600)
    return str(out)


def _run_main(script: str, *args: str) -> None:
    """Run a repository script as ``__main__`` in this process.

    Args:
        script (str): Path relative to the repository root.
        *args (str): Its command line.
    """
    with mock.patch.object(sys, 'argv', [script, *map(str, args)]):
        runpy.run_path(str(REPO_ROOT / script), run_name='__main__')


@pytest.fixture(scope='session')
def run_main() -> Callable[..., None]:
    """Return :func:`_run_main`: ``run_main(script, *args)``."""
    return _run_main


@pytest.fixture
def run_tool_in_process(
        capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> Callable[..., Tuple[int, str]]:
    """Return ``run(script, *args) -> (exit status, stderr)``.

    The script runs as ``__main__`` from the repository root with ``args`` as
    its command line, in this process.
    """

    def run(script: str, *args: str) -> Tuple[int, str]:
        monkeypatch.chdir(REPO_ROOT)
        capsys.readouterr()
        try:
            _run_main(script, *args)
            code, message = 0, ''
        except SystemExit as exit_info:
            code, message = exit_info.code, ''
            if isinstance(code, str):
                code, message = 1, code
        return code or 0, capsys.readouterr().err + message

    return run
