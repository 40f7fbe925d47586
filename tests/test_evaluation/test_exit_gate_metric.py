# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch

from proscale.eco.exit_samples import ExitSamples
from proscale.eco.gate_training import evaluate_gate
from proscale.evaluation.metrics import ExitGateMetric
from proscale.models.gates import ExitGate, exit_utility

EXITS = (2, 4, 6)


def test_metric_matches_evaluate_gate():
    generator = torch.Generator().manual_seed(0)
    samples = ExitSamples(
        torch.randn(10, 4, generator=generator),
        torch.rand(10, 3, generator=generator).double(), EXITS)
    torch.manual_seed(0)
    gate = ExitGate(exits=EXITS, in_channels=4).eval()
    beta, gflops = 0.02, [10., 14., 18.]
    expected = evaluate_gate(gate, samples, beta, gflops)

    metric = ExitGateMetric(exit_gflops=gflops)
    metric.dataset_meta = dict(exits=EXITS)
    utility = exit_utility(samples.quality, EXITS, beta)
    choice = gate(samples.gate_inputs).argmax(1)
    for part in (slice(0, 6), slice(6, 10)):
        metric.process({}, [
            dict(
                choice=choice[part],
                quality=samples.quality[part],
                utility=utility[part])
        ])
    figures = metric.evaluate(10)
    for key in ('accuracy', 'mean_depth', 'target_mean_depth',
                'mean_quality', 'target_mean_quality', 'mean_gflops',
                'target_mean_gflops'):
        assert figures[f'gate/{key}'] == pytest.approx(expected[key])
    for k in EXITS:
        assert figures[f'gate/exit{k}'] == expected['histogram'][k]
    rows = torch.arange(10)
    assert figures['gate/mean_utility'] == pytest.approx(
        float(utility[rows, choice].mean()))
    assert figures['gate/target_mean_utility'] == pytest.approx(
        float(utility.max(1).values.mean()))
    assert figures['gate/mean_utility'] <= figures['gate/target_mean_utility']
