# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS

from proscale.models.gates import exit_utility, hard_exit_targets

EXITS = (2, 3, 4, 5, 6)
LOSSES = ['ExitHardCELoss', 'ExitSoftCELoss', 'ExitSoftMSELoss']


def _utility(batch_size):
    generator = torch.Generator().manual_seed(batch_size)
    quality = torch.rand(batch_size, len(EXITS), generator=generator)
    return exit_utility(quality, EXITS, beta=0.01)


@pytest.mark.parametrize('loss_type', LOSSES)
@pytest.mark.parametrize('batch_size', [1, 7])
def test_loss_is_positive_and_trains_the_logits(loss_type, batch_size):
    loss_fn = MODELS.build(dict(type=loss_type))
    utility = _utility(batch_size)
    logits = torch.zeros(batch_size, len(EXITS), requires_grad=True)
    loss = loss_fn(logits, utility)
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    assert logits.grad.abs().sum() > 0
    # one gradient step lowers the loss, and raises the best exit's logit
    with torch.no_grad():
        stepped = logits - 10.0 * logits.grad
    assert loss_fn(stepped, utility) < loss
    best = hard_exit_targets(utility)
    assert (stepped[torch.arange(batch_size), best] > 0).all()


def test_hard_ce_is_cross_entropy_on_the_best_exit():
    utility = _utility(5)
    logits = torch.randn(
        5, len(EXITS), generator=torch.Generator().manual_seed(1))
    loss = MODELS.build(dict(type='ExitHardCELoss', loss_weight=2.0))(logits,
                                                                      utility)
    expected = 2.0 * F.cross_entropy(logits, hard_exit_targets(utility))
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize('loss_type', ['ExitSoftCELoss', 'ExitSoftMSELoss'])
def test_soft_losses_are_per_image(loss_type):
    """Each image's loss depends on its own utilities only (the softmax runs
    over the exits, not over the batch)."""
    loss_fn = MODELS.build(dict(type=loss_type, temperature=0.1))
    utility = _utility(4)
    logits = torch.randn(
        4, len(EXITS), generator=torch.Generator().manual_seed(2))
    one_by_one = torch.stack(
        [loss_fn(logits[i:i + 1], utility[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(loss_fn(logits, utility), one_by_one.mean())


def test_soft_mse_vanishes_at_the_target_distribution():
    utility = _utility(3)
    loss_fn = MODELS.build(dict(type='ExitSoftMSELoss', temperature=0.1))
    logits = (utility / 0.1).float()
    assert loss_fn(logits, utility).item() < 1e-12
    assert loss_fn(torch.zeros_like(logits), utility).item() > 1e-3


@pytest.mark.parametrize('loss_type', LOSSES)
def test_shape_mismatch_is_reported(loss_type):
    loss_fn = MODELS.build(dict(type=loss_type))
    with pytest.raises(ValueError, match='shape'):
        loss_fn(torch.zeros(2, 5), torch.zeros(2, 4))
