# Copyright (c) The proscale Authors. All rights reserved.
"""The contention benchmark's pieces (the timed runs themselves are for
``tools/analysis/benchmark_contention.py``, not for the test suite)."""
from analysis_helpers import REPO_ROOT, TINY_PROSCALE

from proscale.analysis.contention import (POLICIES, SCENARIOS,
                                          ContentionBenchmark, ThreadPolicy,
                                          format_table,
                                          train_seconds_per_iter, worker_env)


def test_policy_environment_replaces_inherited_thread_settings(monkeypatch):
    monkeypatch.setenv('OMP_WAIT_POLICY', 'ACTIVE')
    monkeypatch.setenv('OMP_NUM_THREADS', '7')
    before, now = POLICIES[:2]
    assert 'OMP_WAIT_POLICY' not in worker_env(before)
    assert 'OMP_NUM_THREADS' not in worker_env(before)
    assert worker_env(now)['OMP_WAIT_POLICY'] == 'PASSIVE'


def test_speed_is_relative_to_the_policys_solo_run(monkeypatch, tmp_path):
    seconds = {
        ('a', SCENARIOS[0]): [1.0],
        ('a', SCENARIOS[1]): [2.0],
        ('a', SCENARIOS[2]): [3.0, 5.0],
        ('b', SCENARIOS[0]): [0.5],
        ('b', SCENARIOS[1]): [5.0],
        ('b', SCENARIOS[2]): [10.0, 10.0],
    }
    benchmark = ContentionBenchmark('cfg.py', 'data/', [
        ThreadPolicy('a'), ThreadPolicy('b', threads=1)
    ], 2, 1, str(tmp_path))
    monkeypatch.setattr(
        benchmark, 'measure', lambda policy, scenario: [
            dict(s_per_iter=s, threads=policy.threads or 2)
            for s in seconds[policy.name, scenario]
        ])
    rows = benchmark.run(log=lambda line: None)
    speed = {(r['policy'], r['scenario']): r['speed_vs_alone'] for r in rows}
    assert speed['a', SCENARIOS[1]] == 0.5
    assert speed['a', SCENARIOS[2]] == 0.25
    assert speed['b', SCENARIOS[2]] == 0.05
    speedup = {(r['policy'], r['scenario']): r['speedup_vs_first']
               for r in rows}
    assert speedup['a', SCENARIOS[1]] == 1
    assert speedup['b', SCENARIOS[0]] == 2
    assert speedup['b', SCENARIOS[2]] == 0.4
    assert [r['threads'] for r in rows[:2]] == [2, 1]
    assert format_table(rows).count('\n') == len(rows) + 1


def test_training_is_timed(synthetic_data_root, tmp_path):
    seconds = train_seconds_per_iter(
        str(REPO_ROOT / TINY_PROSCALE), synthetic_data_root, str(tmp_path),
        iters=1, warmup=1, threads=None)
    assert 0 < seconds < 600
