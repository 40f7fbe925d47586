# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch

from proscale.analysis import benchmark, make_workload
from proscale.analysis.latency import peak_memory_mb

ALLOCATION_MB = 64


def test_cpu_peak_memory_sees_a_temporary_allocation():

    def allocate():
        buffer = torch.ones(ALLOCATION_MB * 1024**2 // 4)
        return buffer.sum()

    assert peak_memory_mb(allocate) >= 0.9 * ALLOCATION_MB
    assert peak_memory_mb(lambda: None) < 0.5 * ALLOCATION_MB


def test_benchmark_interleaves_and_compares_to_the_first():
    calls = []
    workloads = {
        name: (lambda name=name: calls.append(name))
        for name in ('first', 'second')
    }
    results = benchmark(workloads, runs=3, warmup=1)
    # 4 interleaved rounds, then one call each for the peak memory.
    assert calls == ['first', 'second'] * 4 + ['first', 'second']
    assert list(results) == ['first', 'second']
    assert results['first']['ratio'] == 1.0
    for r in results.values():
        assert r['min_s'] <= r['median_s'] <= r['max_s']


@pytest.mark.parametrize('kwargs', [dict(runs=0), dict(warmup=-1)])
def test_benchmark_rejects_bad_counts(kwargs):
    with pytest.raises(ValueError, match='runs'):
        benchmark({'a': lambda: None}, **kwargs)


def test_make_workload_rejects_unknown_part(tiny_baseline):
    with pytest.raises(ValueError, match="'backbone'"):
        make_workload(tiny_baseline, (64, 64), part='backbone')
