# Copyright (c) The proscale Authors. All rights reserved.
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import PixelData

from proscale.eco.gate_sweep import compare_with_fixed_curve, format_sweep
from proscale.engine.loops import ExitPolicyTestLoop


def _row(policy, kind, pq, gflops, **extra):
    return dict(
        policy=policy,
        kind=kind,
        PQ=pq,
        gflops=gflops,
        mean_depth=0.0,
        exit_shares={},
        full_model=False,
        **extra)


def test_gates_and_oracle_are_compared_at_their_gflops():
    rows = [
        _row('exit2', 'fixed', 40.0, 1.0, exit=2),
        _row('exit4', 'fixed', 50.0, 2.0, exit=4),
        _row('beta0', 'gate', 46.0, 1.5, beta=0.0),
        _row('beta9', 'gate', 39.0, 0.5, beta=9.0),
        _row('oracle', 'oracle', 57.0, 1.5),
    ]
    compare_with_fixed_curve(rows)
    gate, cheap, oracle = rows[2:]
    assert gate['fixed_curve_quality'] == pytest.approx(45.0)
    assert gate['quality_over_fixed'] == pytest.approx(1.0)
    # clamped below the shallowest exit
    assert cheap['fixed_curve_quality'] == pytest.approx(40.0)
    assert oracle['quality_over_fixed'] == pytest.approx(12.0)
    assert gate['oracle_gain_captured'] == pytest.approx(1 / 12)
    assert cheap['oracle_gain_captured'] == pytest.approx(-1 / 12)
    assert 'oracle_gain_captured' not in oracle
    table = format_sweep(rows)
    assert '+1.00' in table and '+12.00' in table


class _Quality:
    """Per-image PQ tables: image i scores ``pq[i][j]`` at exit j."""

    def __init__(self, pq):
        self.pq = pq

    def evaluate(self, image_id, predictions):
        assert all(p.img_id == image_id for p in predictions)
        tables = np.zeros((len(predictions), 3, 3))
        tables[:, 0, 0] = self.pq[image_id]
        return tables


@pytest.mark.parametrize('beta, expected', [(0.0, [4, 2, 2, 6]),
                                            (0.1, [2, 2, 2, 6])])
def test_oracle_takes_each_images_best_exit(beta, expected):
    loop = object.__new__(ExitPolicyTestLoop)
    loop.exits = [2, 4, 6]
    loop.oracle_beta = beta
    loop.quality_evaluator = _Quality({
        0: [0.5, 0.65, 0.6],
        1: [0.7, 0.7, 0.7],  # a tie: the shallowest exit
        2: [np.nan, 0.9, 0.9],  # nothing to get wrong at exit 2
        3: [0.1, 0.2, 0.9],
    })
    outputs = {
        k: [
            DetDataSample(
                metainfo=dict(img_id=i),
                pred_panoptic_seg=PixelData(sem_seg=torch.zeros(1, 2, 2)))
            for i in range(4)
        ]
        for k in loop.exits
    }
    assert loop._oracle_exits(outputs) == expected
