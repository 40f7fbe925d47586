# Copyright (c) The proscale Authors. All rights reserved.
import numpy as np
import pytest
import torch

from proscale.models.gates import (exit_utility, hard_exit_targets,
                                   soft_exit_targets)

EXITS = (2, 3, 4, 5, 6)


def test_utility_is_quality_minus_beta_times_depth():
    quality = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.9, 0.9, 0.8, 0.7, 1.0]])
    utility = exit_utility(quality, EXITS, beta=0.05)
    expected = quality - 0.05 * np.array(EXITS)
    np.testing.assert_allclose(utility.numpy(), expected, rtol=0, atol=1e-15)
    assert utility.dtype == torch.float64


def test_targets_follow_beta():
    quality = torch.tensor([[0.50, 0.60, 0.65, 0.67, 0.68]])
    # beta 0: the best quality; larger beta: shallower exits
    assert hard_exit_targets(exit_utility(quality, EXITS, 0.0)).item() == 4
    assert hard_exit_targets(exit_utility(quality, EXITS, 0.03)).item() == 2
    assert hard_exit_targets(exit_utility(quality, EXITS, 0.2)).item() == 0


def test_ties_go_to_the_shallowest_exit():
    quality = torch.tensor([
        [0.7, 0.7, 0.7, 0.7, 0.7],  # all tied at beta 0
        [0.2, 0.6, 0.3, 0.6, 0.6],  # tie between exits 3, 5 and 6
    ])
    targets = hard_exit_targets(exit_utility(quality, EXITS, 0.0))
    assert targets.tolist() == [0, 1]
    # 0.30 - 0.01 * 2 and 0.31 - 0.01 * 3 differ by rounding only
    rounded_tie = exit_utility([[0.30, 0.31, 0.0, 0.0, 0.0]], EXITS, 0.01)
    assert rounded_tie[0, 0] != rounded_tie[0, 1]
    assert hard_exit_targets(rounded_tie).item() == 0
    # a real (small) advantage still wins
    assert hard_exit_targets(
        exit_utility([[0.30, 0.311, 0, 0, 0]], EXITS, 0.01)).item() == 1


def test_soft_targets_normalise_over_exits_per_image():
    utility = exit_utility([[0.1, 0.2, 0.3, 0.2, 0.1]], EXITS, 0.0)
    target = soft_exit_targets(utility, temperature=0.1)
    assert target.shape == (1, 5)
    torch.testing.assert_close(
        target.sum(1), torch.ones(1, dtype=target.dtype))
    assert target.argmax().item() == 2
    sharper = soft_exit_targets(utility, temperature=0.01)
    assert sharper[0, 2] > target[0, 2]


@pytest.mark.parametrize('kwargs, match', [
    (dict(quality=[[0.1, 0.2]], exits=EXITS, beta=0.0), r'shape \(N, 5\)'),
    (dict(quality=[[0.1, 0.2]], exits=(3, 2), beta=0.0), 'increasing'),
    (dict(quality=[[0.1, 0.2]], exits=(), beta=0.0), 'empty'),
    (dict(quality=[[0.1, 0.2]], exits=(2, 3), beta=-1.0), 'beta'),
])
def test_bad_utility_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        exit_utility(**kwargs)


def test_bad_temperature():
    with pytest.raises(ValueError, match='temperature'):
        soft_exit_targets(torch.zeros(1, 5), 0.0)
