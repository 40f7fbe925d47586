# Copyright (c) The proscale Authors. All rights reserved.
"""proscale installed as a wheel and used from another OpenMMLab repository.

A downstream repository has its own ``projects/`` package. The wheel built
from this checkout is installed into a scratch folder; the downstream
repository inherits one of the shipped configs and trains one iteration,
through mmdet's own ``tools/train.py`` and through ours.
"""
import importlib.util
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = 'mask2former/mask2former_r18_1xb4-tiny_synthetic-panoptic.py'


@pytest.fixture(scope='module')
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build proscale's wheel and install it (no dependencies) in a folder.

    Returns:
        str: The folder to put on ``PYTHONPATH``.
    """
    wheel_dir = tmp_path_factory.mktemp('wheel')
    site = tmp_path_factory.mktemp('site')
    pip = [sys.executable, '-m', 'pip', '-q']
    # Without the C++ ops (tests/test_ops checks them): nothing to compile.
    env = dict(os.environ, PROSCALE_WITH_OPS='0')
    subprocess.run([
        *pip, 'wheel', '--no-deps', '--no-build-isolation', '-w',
        str(wheel_dir),
        str(REPO_ROOT)
    ],
                   check=True,
                   cwd=wheel_dir,
                   env=env)
    wheels = list(wheel_dir.glob('proscale-*.whl'))
    assert len(wheels) == 1, wheels
    subprocess.run(
        [*pip, 'install', '--no-deps', '--target',
         str(site),
         str(wheels[0])],
        check=True)
    return str(site)


@pytest.fixture(scope='module')
def downstream_repo(tmp_path_factory: pytest.TempPathFactory,
                    synthetic_data_root: str) -> Path:
    """A downstream repository with its own ``projects`` package and a
    config inheriting proscale's tiny config (by the installed path)."""
    repo = tmp_path_factory.mktemp('downstream')
    (repo / 'projects' / 'mine').mkdir(parents=True)
    (repo / 'projects' / '__init__.py').write_text('')
    (repo / 'projects' / 'mine' / '__init__.py').write_text('OWN = 1\n')
    (repo / 'configs').mkdir()
    return repo


def _write_config(repo: Path, site: str, data_root: str) -> str:
    base = osp.join(site, 'proscale', '.mim', 'configs', TINY_CONFIG)
    assert osp.isfile(base), f'config not shipped in the wheel: {base}'
    config = repo / 'configs' / 'downstream_tiny.py'
    config.write_text(
        f'_base_ = [{base!r}]\n'
        "custom_imports = dict(imports=['proscale', 'projects.mine'], "
        'allow_failed_imports=False)\n'
        f'train_dataloader = dict(dataset=dict(data_root={data_root!r}))\n'
        'train_cfg = dict(max_iters=1, val_interval=100)\n'
        'val_dataloader = None\nval_cfg = None\nval_evaluator = None\n'
        'test_dataloader = None\ntest_cfg = None\ntest_evaluator = None\n'
        'default_hooks = dict(checkpoint=dict(interval=100))\n')
    return str(config)


def _run(cmd: List[str], repo: Path, site: str) -> str:
    env: Dict[str, str] = {
        **os.environ, 'PYTHONPATH': os.pathsep.join([site, str(repo)]),
        'OMP_NUM_THREADS': '1'
    }
    proc = subprocess.run(
        cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f'{cmd} exited with {proc.returncode}\n{proc.stdout[-2000:]}\n'
        f'{proc.stderr[-4000:]}')
    return proc.stdout + proc.stderr


def test_wheel_ships_package_configs_and_tools(installed_wheel: str) -> None:
    pkg = Path(installed_wheel) / 'proscale'
    assert (pkg / '__init__.py').is_file()
    assert not (Path(installed_wheel) / 'projects').exists()
    assert (pkg / '.mim' / 'configs' / TINY_CONFIG).is_file()
    assert (pkg / '.mim' / 'tools' / 'train.py').is_file()


@pytest.mark.parametrize('tool', ['mmdet', 'proscale'])
def test_downstream_repo_trains_one_iteration(tool: str, installed_wheel: str,
                                              downstream_repo: Path,
                                              synthetic_data_root: str,
                                              tmp_path: Path) -> None:
    config = _write_config(downstream_repo, installed_wheel,
                           synthetic_data_root)
    if tool == 'mmdet':
        mmdet_dir = osp.dirname(importlib.util.find_spec('mmdet').origin)
        script = osp.join(mmdet_dir, '.mim', 'tools', 'train.py')
    else:
        script = osp.join(installed_wheel, 'proscale', '.mim', 'tools',
                          'train.py')
    work_dir = tmp_path / 'work'
    _run([sys.executable, script, config, '--work-dir',
          str(work_dir)], downstream_repo, installed_wheel)
    assert (work_dir / 'iter_1.pth').is_file()


def test_downstream_imports_resolve_to_the_wheel(
        installed_wheel: str, downstream_repo: Path) -> None:
    out = _run([
        sys.executable, '-c', 'import proscale, projects.mine; '
        'print(proscale.__file__); print(projects.mine.__file__)'
    ], downstream_repo, installed_wheel)
    lines = out.split()
    assert lines[0].startswith(installed_wheel)
    assert lines[1].startswith(str(downstream_repo))
