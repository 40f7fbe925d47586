# Copyright (c) The proscale Authors. All rights reserved.
"""OpenMP waits passively in processes that import proscale before torch."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proscale.openmp_env import (WAIT_POLICY_VAR,
                                 default_to_passive_openmp_wait)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The tools that train or run models at length.
MODEL_TOOLS = ('tools/train.py', 'tools/test.py', 'tools/demo.py',
               'tools/eco/eval_exits.py', 'tools/eco/derive_exit_dataset.py',
               'tools/eco/sweep_beta.py')
# Packages whose import loads torch (and its OpenMP runtime).
LOADS_TORCH = {'torch', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'proscale'}


@pytest.fixture
def torch_not_loaded(monkeypatch):
    """Pretend torch (hence libgomp) is not loaded yet."""
    monkeypatch.delitem(sys.modules, 'torch')
    monkeypatch.delenv(WAIT_POLICY_VAR, raising=False)


def test_unset_policy_becomes_passive(torch_not_loaded):
    assert default_to_passive_openmp_wait()
    assert os.environ[WAIT_POLICY_VAR] == 'PASSIVE'


def test_users_choice_is_kept(torch_not_loaded, monkeypatch):
    monkeypatch.setenv(WAIT_POLICY_VAR, 'ACTIVE')
    assert not default_to_passive_openmp_wait()
    assert os.environ[WAIT_POLICY_VAR] == 'ACTIVE'


def test_nothing_changes_once_torch_is_loaded(monkeypatch):
    monkeypatch.delenv(WAIT_POLICY_VAR, raising=False)
    assert not default_to_passive_openmp_wait()
    assert WAIT_POLICY_VAR not in os.environ


def test_importing_proscale_first_sets_passive_wait():
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY_VAR}
    script = ('import os, sys; import proscale; '
              "assert 'torch' in sys.modules; "
              f"print(os.environ.get('{WAIT_POLICY_VAR}'))")
    out = subprocess.run([sys.executable, '-c', script],
                         env=env,
                         capture_output=True,
                         text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == 'PASSIVE'


@pytest.mark.parametrize('tool', MODEL_TOOLS)
def test_tools_import_proscale_before_torch(tool):
    tree = ast.parse((REPO_ROOT / tool).read_text())
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or '']
        else:
            continue
        packages = {name.split('.')[0] for name in names} & LOADS_TORCH
        if packages:
            assert packages == {'proscale'}, f'{tool} imports {names} first'
            return
    pytest.fail(f'{tool} imports none of {sorted(LOADS_TORCH)}')
