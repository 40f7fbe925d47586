# Copyright (c) The proscale Authors. All rights reserved.
"""The end-to-end demo (tools/demo.py) at its small size.

The demo runs in this process (its stages call the tools' ``main``, as the
demo does, so torch and mmdet are imported once) with one torch thread.
"""
import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from proscale.demo import PRESETS, DemoPipeline
from proscale.demo.report import DemoReport

REPO_ROOT = Path(__file__).resolve().parents[2]
METRICS = {'PQ', 'SQ', 'RQ', 'encoder_gflops', 'total_gflops', 'latency_ratio'}
STAGES = {
    'data', 'train_baseline', 'train_proscale', 'train_eco_parent',
    'eval_baseline', 'eval_proscale', 'eval_eco_parent', 'derive_exit_dataset',
    'train_gate', 'eval_eco_gated', 'flops_baseline', 'flops_proscale',
    'flops_eco_gated', 'latency'
}


def _demo_tool():
    spec = importlib.util.spec_from_file_location(
        'demo_tool_under_test', REPO_ROOT / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def small_demo(tmp_path_factory) -> Path:
    """Work dir of one small demo run through tools/demo.py."""
    work_dir = tmp_path_factory.mktemp('demo') / 'demo'
    _demo_tool().main(
        ['--small', '--threads', '1', '--work-dir',
         str(work_dir)])
    return work_dir


def test_every_stage_runs_and_reports(small_demo: Path):
    settings = PRESETS['small']
    assert {p.stem for p in (small_demo / 'stages').glob('*.json')} == STAGES
    for stage in STAGES:
        assert (small_demo / 'logs' / f'{stage}.log').is_file()

    summary = json.loads((small_demo / 'summary.json').read_text())
    assert set(summary) == {'baseline', 'proscale', 'eco_parent', 'eco_gated'}
    for name in ('baseline', 'proscale'):
        assert set(summary[name]) == METRICS
    assert set(summary['eco_parent']) == METRICS | {'pq_per_exit'}
    assert set(summary['eco_gated']) == METRICS | {'mean_depth', 'beta'}
    for entry in summary.values():
        for key in METRICS:
            assert _is_number(entry[key]), (key, entry[key])
        assert 0 <= entry['PQ'] <= 100
        assert entry['total_gflops'] > entry['encoder_gflops'] > 0
    assert summary['baseline']['latency_ratio'] == 1.0
    assert set(
        summary['eco_parent']['pq_per_exit']) == {'2', '3', '4', '5', '6'}
    assert all(
        _is_number(pq) for pq in summary['eco_parent']['pq_per_exit'].values())
    assert 2 <= summary['eco_gated']['mean_depth'] <= 6
    assert summary['eco_gated']['beta'] == settings.beta
    # PRO-SCALE's encoder is cheaper than the baseline's (GFLOPs count
    # the architecture, so this holds even untrained).
    assert (summary['proscale']['encoder_gflops']
            < summary['baseline']['encoder_gflops'])

    # each training keeps its own log and scalars (one process, one
    # mmengine global state)
    for name in ('baseline', 'proscale', 'eco_parent'):
        logs = list((small_demo / 'train' / name).glob('*/*.log'))
        scalars = list(
            (small_demo / 'train' / name).glob('*/vis_data/scalars.json'))
        assert len(logs) == len(scalars) == 1, name
        iters = [
            json.loads(line)['iter']
            for line in scalars[0].read_text().splitlines()
            if 'loss' in json.loads(line)
        ]
        assert iters == sorted(set(iters)) and iters, (name, iters)

    assert (small_demo / 'pq_vs_gflops.png').read_bytes()[:4] == b'\x89PNG'
    images = sorted((small_demo / 'visualisations').glob('*.png'))
    assert len(images) == settings.num_visualisations
    assert all(path.read_bytes()[:4] == b'\x89PNG' for path in images)


def test_rerun_reuses_every_stage(small_demo: Path):
    summary = json.loads((small_demo / 'summary.json').read_text())
    checkpoint = small_demo / 'train' / 'baseline' / 'iter_2.pth'
    mtime = checkpoint.stat().st_mtime_ns

    pipeline = DemoPipeline(
        str(small_demo), PRESETS['small'].with_overrides(threads=1))
    assert pipeline.run() == summary
    assert pipeline.stages.num_run == 0
    assert pipeline.stages.num_reused == len(STAGES)
    assert checkpoint.stat().st_mtime_ns == mtime


def test_fresh_refuses_a_folder_that_is_not_a_demo(tmp_path: Path):
    (tmp_path / 'keep.txt').write_text('user data')
    with pytest.raises(ValueError, match='not a demo work dir'):
        DemoPipeline(str(tmp_path), PRESETS['small'], fresh=True)
    assert (tmp_path / 'keep.txt').is_file()


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match='train_iters'):
        PRESETS['small'].with_overrides(train_iters=1)
    with pytest.raises(ValueError, match='num_val'):
        PRESETS['small'].with_overrides(num_val=0)


def _claims(gated_pq, gated_gflops):
    exits = {
        str(k): dict(PQ=pq, total_gflops=gflops)
        for k, pq, gflops in ((2, 40.0, 1.0), (4, 50.0, 2.0), (6, 52.0, 3.0))
    }
    report = SimpleNamespace(exit_layers=[2, 4, 6], exits=exits)
    summary = dict(
        baseline=dict(PQ=50.0, encoder_gflops=1.0),
        proscale=dict(PQ=49.5, encoder_gflops=0.5),
        eco_parent=dict(
            PQ=52.0, pq_per_exit={k: v['PQ']
                                  for k, v in exits.items()}),
        eco_gated=dict(
            PQ=gated_pq, total_gflops=gated_gflops, mean_depth=3.0))
    return DemoReport.checks(report, summary)


def test_gated_claim_compares_with_the_interpolated_fixed_curve():
    text, ok = _claims(45.5, 1.5)[-1]
    assert ok and 'at or above the fixed-exit curve' in text
    assert '(45.00 at 1.500)' in text
    assert not _claims(44.9, 1.5)[-1][1]
