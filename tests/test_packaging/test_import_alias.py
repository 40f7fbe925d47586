# Copyright (c) The proscale Authors. All rights reserved.
"""The repository's old import name is one module identity with
``proscale``: nothing is executed or registered twice."""
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_projects_proscale_is_an_alias_of_proscale() -> None:
    code = ('import proscale, projects.proscale as old\n'
            'import projects.proscale.models.gates.exit_gate as old_gate\n'
            'import proscale.models.gates.exit_gate as gate\n'
            'from mmdet.registry import MODELS\n'
            'assert old is proscale, old\n'
            'assert old_gate is gate\n'
            "assert MODELS.get('ExitGate') is gate.ExitGate\n"
            'print("ok")\n')
    # Both orders: the alias first, then the real name, and the reverse.
    for first in ('projects.proscale', 'proscale'):
        proc = subprocess.run(
            [sys.executable, '-c', f'import {first}\n' + code],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip() == 'ok'


def test_resolve_config_path_finds_shipped_configs() -> None:
    from proscale.utils import config_root, resolve_config_path
    name = 'mask2former/mask2former_r18_1xb4-tiny_synthetic-panoptic.py'
    path = resolve_config_path('proscale::' + name)
    assert path == str(Path(config_root()) / name)
    assert Path(path).is_file()
    assert resolve_config_path('configs/x.py') == 'configs/x.py'
