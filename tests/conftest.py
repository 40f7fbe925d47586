"""Fixtures shared by the whole test suite.

- ``synthetic_data_root`` (session): a small synthetic panoptic dataset
  (:data:`SYNTHETIC_NUM_TRAIN` / :data:`SYNTHETIC_NUM_VAL` images of
  :data:`SYNTHETIC_IMAGE_SIZE` pixels), generated once per test session.
- ``synthetic_cfg_options`` (session): ``--cfg-options`` items that point a
  config based on ``configs/_base_/datasets/synthetic_panoptic.py`` at that
  dataset (data roots of all dataloaders and the evaluators' files).
  ``synthetic_cfg_overrides`` is the same as a dict, for
  ``Config.merge_from_dict``.
- ``run_tool``: runs a repository script (e.g. ``tools/train.py``) as a real
  subprocess, the way a user does.
"""
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from projects.proscale.datasets import generate_synthetic_panoptic

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_NUM_TRAIN = 16
SYNTHETIC_NUM_VAL = 8
SYNTHETIC_IMAGE_SIZE = 64


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
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
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


@pytest.fixture(scope='session')
def synthetic_cfg_options(
        synthetic_cfg_overrides: Dict[str, str]) -> List[str]:
    """``key=value`` items for ``--cfg-options`` (see module docstring)."""
    return [f'{key}={value}' for key, value in synthetic_cfg_overrides.items()]


def _run_tool(script: str,
              *args: str,
              timeout: float = 300,
              returncode: Optional[int] = 0,
              env: Optional[Dict[str, str]] = None
              ) -> subprocess.CompletedProcess:
    """Run a repository script with this interpreter from the repo root.

    Args:
        script (str): Path relative to the repository root.
        *args (str): Command-line arguments.
        timeout (float): Seconds before the process is killed.
        returncode (int, optional): Expected exit status, checked with the
            process's output in the failure message; None skips the check.
        env (dict, optional): Extra environment variables.

    Returns:
        subprocess.CompletedProcess: With ``stdout`` and ``stderr`` as text.
    """
    proc = subprocess.run([sys.executable, script, *map(str, args)],
                          cwd=REPO_ROOT,
                          env={
                              **os.environ,
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
    """Return :func:`_run_tool`: ``run_tool(script, *args, timeout=...)``."""
    return _run_tool
