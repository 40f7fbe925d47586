# Copyright (c) The proscale Authors. All rights reserved.
import json

import numpy as np
import pytest
from analysis_helpers import REPO_ROOT, load_tool

from proscale.analysis.gate_training_speed import (
    compare_gate_training_speed, format_gate_training_speed)
from proscale.evaluation import ExitDataset
from proscale.evaluation.exit_dataset import (EXIT_DATASET_FORMAT,
                                              EXIT_DATASET_VERSION)

EXITS = (2, 4, 6)
PROJECTS = str(REPO_ROOT / 'projects')


@pytest.fixture(scope='module')
def derived(tmp_path_factory) -> str:
    """A derived file of 12 images with 4-channel gate inputs."""
    rng = np.random.default_rng(0)
    pq = rng.uniform(size=(12, len(EXITS), 3))
    path = str(tmp_path_factory.mktemp('derived') / 'derived.npz')
    ExitDataset(
        image_ids=np.arange(12),
        exits=EXITS,
        pq=pq,
        sq=pq,
        rq=pq,
        gate_inputs=rng.normal(size=(12, 4)).astype(np.float32),
        meta=dict(
            format=EXIT_DATASET_FORMAT,
            format_version=EXIT_DATASET_VERSION,
            exits=list(EXITS))).save(path)
    return path


def test_every_tree_is_timed_every_round(derived):
    rows = compare_gate_training_speed([PROJECTS, PROJECTS],
                                       derived,
                                       gates=1,
                                       iters=3,
                                       rounds=2)
    assert [row['projects_dir'] for row in rows] == [PROJECTS, PROJECTS]
    for row in rows:
        assert len(row['seconds_per_gate']) == 2
        assert all(seconds > 0 for seconds in row['seconds_per_gate'])
        assert row['median_ms_per_step'] == pytest.approx(
            row['median_seconds_per_gate'] / 3 * 1e3)
    assert rows[0]['ratio'] == 1.0
    assert rows[1]['ratio'] == pytest.approx(
        rows[1]['median_seconds_per_gate'] /
        rows[0]['median_seconds_per_gate'])
    assert format_gate_training_speed(rows).count(PROJECTS) == 2


def test_a_failing_tree_is_named(derived, tmp_path):
    broken = tmp_path / 'projects'
    (broken / 'proscale').mkdir(parents=True)
    (broken / 'proscale' / '__init__.py').write_text('raise ImportError\n')
    with pytest.raises(RuntimeError, match=str(broken)):
        compare_gate_training_speed([str(broken)], derived, gates=1, iters=2,
                                    rounds=1)


def test_tool_writes_json_and_names_a_missing_checkout(derived, tmp_path,
                                                       capsys):
    tool = load_tool('benchmark_gate_training')
    out = tmp_path / 'speed.json'
    tool.main([
        derived, '--gates', '1', '--iters', '2', '--rounds', '1', '--json',
        str(out)
    ])
    rows = json.loads(out.read_text())
    assert [row['projects_dir'] for row in rows] == [PROJECTS]
    with pytest.raises(SystemExit) as error:
        tool.main([derived, '--compare-with', str(tmp_path / 'nowhere')])
    assert error.value.code == 2
    assert 'nowhere holds no projects/proscale' in capsys.readouterr().err
