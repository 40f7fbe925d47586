# Copyright (c) The proscale Authors. All rights reserved.
import random

import numpy as np
import pytest
import torch

from proscale.eco.beta_search import (fit_gate, search_beta, search_iters,
                                      target_beta, target_cost)
from proscale.eco.exit_samples import (ExitSamples, load_exit_samples,
                                       split_samples)
from proscale.eco.gate_training import (evaluate_gate, exit_costs, train_gate)
from proscale.evaluation import ExitDataset
from proscale.evaluation.exit_dataset import (EXIT_DATASET_FORMAT,
                                              EXIT_DATASET_VERSION)

EXITS = (2, 3, 4, 5, 6)
TRAIN_KWARGS = dict(iters=200, batch_size=64, lr=0.1)


def _samples(num=240, seed=0):
    """Images whose difficulty (how much depth helps) is channel 0."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(num, 8, generator=generator)
    difficulty = torch.sigmoid(3 * inputs[:, 0]).double()
    depth = torch.tensor(EXITS, dtype=torch.float64)
    quality = 0.9 - 0.6 * difficulty[:, None] * torch.exp(-(depth - 2) / 1.5)
    return ExitSamples(inputs, quality, EXITS)


def test_split_is_reproducible_and_disjoint():
    samples = _samples(50)
    samples.image_ids = np.arange(100, 150)
    train, val = split_samples(samples, 0.2, seed=3)
    assert (len(train), len(val)) == (40, 10)
    assert not set(train.image_ids) & set(val.image_ids)
    again, _ = split_samples(samples, 0.2, seed=3)
    assert np.array_equal(again.image_ids, train.image_ids)
    with pytest.raises(ValueError, match='at least 2'):
        split_samples(samples.subset([0]))


@pytest.fixture(scope='module')
def split():
    return split_samples(_samples(), 0.25)


@pytest.fixture(scope='module')
def gate(split):
    return train_gate(split[0], beta=0.02, **TRAIN_KWARGS)


def test_gate_learns_the_difficulty(split, gate):
    val = split[1]
    metrics = evaluate_gate(gate, val, beta=0.02, exit_gflops=[1, 2, 3, 4, 5])
    # the most frequent target exit covers 52% of the held-out images
    assert metrics['accuracy'] > 0.7
    # hard images (channel 0 high) go deeper than easy ones
    exits = gate.predict(val.gate_inputs)
    order = val.gate_inputs[:, 0].argsort()
    assert exits[
        order[:10]].double().mean() < exits[order[-10:]].double().mean() - 1
    assert len(set(exits.tolist())) >= 3
    assert metrics['mean_gflops'] == pytest.approx(metrics['mean_depth'] - 1)
    assert sum(metrics['histogram'].values()) == pytest.approx(1.0)
    assert bool(gate.trained)


def test_training_is_deterministic(split):
    kwargs = dict(TRAIN_KWARGS, iters=10, hidden_channels=4)
    first = train_gate(split[0], beta=0.02, **kwargs)
    torch.testing.assert_close(
        train_gate(split[0], beta=0.02, **kwargs).state_dict(),
        first.state_dict())
    other_seed = train_gate(split[0], beta=0.02, seed=1, **kwargs)
    assert not torch.equal(other_seed.head[0].weight, first.head[0].weight)


def test_training_leaves_the_global_random_states_alone(split):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    states = (random.getstate(), np.random.get_state()[1].copy(),
              torch.get_rng_state())
    train_gate(split[0], beta=0.02, iters=3, seed=7)
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


@pytest.mark.parametrize('loss', ['soft_ce', 'soft_mse'])
def test_soft_losses_train_too(split, loss):
    train, val = split
    gate = train_gate(
        train, beta=0.02, loss=loss, temperature=0.02, **TRAIN_KWARGS)
    assert evaluate_gate(gate, val, beta=0.02)['accuracy'] > 0.6


def test_larger_beta_gives_shallower_gates(split, gate):
    train, val = split
    depth = evaluate_gate(gate, val, 0.02)['mean_depth']
    assert evaluate_gate(train_gate(train, 0.0, **TRAIN_KWARGS), val,
                         0.0)['mean_depth'] > depth
    assert evaluate_gate(train_gate(train, 1.0, **TRAIN_KWARGS), val,
                         1.0)['mean_depth'] == 2


def test_beta_search_meets_a_depth_budget(split):
    best, trials = search_beta(
        *split, 4.0, exit_costs(EXITS), num_steps=4, **TRAIN_KWARGS)
    assert best.cost <= 4.0
    assert best.cost > 3.5  # not needlessly shallow
    assert best.beta > 0 and len(trials) == 5
    assert best.quality == max(t.quality for t in trials if t.cost <= 4.0)


def test_beta_search_chooses_the_iterations_too(split):
    kwargs = dict(TRAIN_KWARGS)
    del kwargs['iters']
    best, trials = search_beta(
        *split, 4.0, exit_costs(EXITS), num_steps=3, iters=(200, 2), **kwargs)
    # one bisection per training length, the shorter first
    assert [t.iters for t in trials] == [2] * 4 + [200] * 4
    feasible = [t for t in trials if t.cost <= 4.0]
    assert best.quality == max(t.quality for t in feasible)
    # two steps barely move the gate from its random start
    assert best.iters == 200
    # each length's bisection is the one it would run alone
    alone, alone_trials = search_beta(
        *split, 4.0, exit_costs(EXITS), num_steps=3, iters=200, **kwargs)
    assert [(t.beta, t.cost) for t in alone_trials
            ] == [(t.beta, t.cost) for t in trials if t.iters == 200]
    assert (alone.beta, alone.iters) == (best.beta, best.iters)
    with pytest.raises(ValueError, match='positive'):
        search_beta(*split, 4.0, exit_costs(EXITS), iters=(0, 5), **kwargs)


def test_search_iters_maximises_the_held_out_utility(split):
    kwargs = dict(TRAIN_KWARGS)
    del kwargs['iters']
    best, trials = search_iters(
        *split, 0.02, exit_costs(EXITS), iters=(1, 200), **kwargs)
    assert [t.iters for t in trials] == [1, 200]
    assert best.utility == max(t.utility for t in trials)
    assert best.iters == 200
    assert best.utility == pytest.approx(best.quality - 0.02 * best.cost)


def test_fit_gate_refits_with_the_chosen_iterations():
    kwargs = dict(TRAIN_KWARGS)
    del kwargs['iters']
    fit = fit_gate(
        _samples(),
        budget=4.0,
        val_fraction=0.25,
        search_steps=2,
        iters=[3, 200],
        **kwargs)
    chosen = [
        t for t in fit.trials if (t.beta, t.iters) == (fit.beta, fit.iters)
    ]
    assert len(chosen) == 1 and fit.iters == 200
    assert fit.val_metrics['mean_depth'] == pytest.approx(chosen[0].cost)
    refit = train_gate(_samples(), fit.beta, iters=fit.iters, **kwargs)
    torch.testing.assert_close(fit.gate.head.weight, refit.head.weight)
    given = fit_gate(
        _samples(), beta=0.02, val_fraction=0.25, iters=[1, 200], **kwargs)
    assert given.iters == 200 and len(given.trials) == 2
    assert fit_gate(
        _samples(), beta=0.02, val_fraction=0.25, iters=5,
        **kwargs).trials == []


def test_target_beta_is_the_smallest_beta_meeting_the_budget():
    samples, costs = _samples(), exit_costs(EXITS)
    beta = target_beta(samples, 4.0, costs)
    assert target_cost(samples, beta, costs) <= 4.0
    assert target_cost(samples, beta * 0.99, costs) > 4.0
    assert target_cost(samples, 0.0, costs) > target_cost(samples, beta, costs)
    assert target_beta(samples, 1.0, costs) == 1.0  # below every exit


def test_fit_gate_with_a_gflops_budget():
    fit = fit_gate(
        _samples(),
        budget=13.0,
        budget_unit='gflops',
        exit_gflops=[10, 11, 12, 13, 14],
        val_fraction=0.25,
        search_steps=2,
        **TRAIN_KWARGS)
    assert fit.val_metrics['mean_gflops'] <= 13.0
    assert fit.trials and fit.beta == min(
        (t
         for t in fit.trials if t.cost <= 13.0), key=lambda t: -t.quality).beta
    # the final gate is refit on all images with the chosen beta
    refit = train_gate(_samples(), fit.beta, **TRAIN_KWARGS)
    torch.testing.assert_close(fit.gate.head.weight, refit.head.weight)
    assert fit.train_metrics['num_images'] == len(_samples())
    # the gate's own cost counts against the budget
    with_gate = fit_gate(
        _samples(),
        budget=13.0,
        budget_unit='gflops',
        exit_gflops=[10, 11, 12, 13, 14],
        gate_gflops=0.5,
        val_fraction=0.25,
        search_steps=2,
        refit=False,
        **TRAIN_KWARGS)
    assert with_gate.val_metrics['mean_gflops'] <= 13.0
    assert with_gate.val_metrics['mean_gflops'] == pytest.approx(
        with_gate.val_metrics['mean_depth'] + 8.5)
    assert with_gate.train_metrics['num_images'] == 180
    with pytest.raises(ValueError, match='exactly one'):
        fit_gate(_samples(), beta=0.1, budget=3.0)
    with pytest.raises(ValueError, match='GFLOPs of every exit'):
        fit_gate(_samples(), budget=3.0, budget_unit='gflops')


def test_load_exit_samples(tmp_path):
    pq = np.full((3, 5, 3), 0.5)
    pq[1, 2, 0] = np.nan  # no GT and no prediction at exit 4: perfect
    path = str(tmp_path / 'derived.npz')
    ExitDataset(
        image_ids=[1, 2, 3],
        exits=EXITS,
        pq=pq,
        sq=pq,
        rq=pq,
        gate_inputs=np.ones((3, 4), np.float32),
        meta=dict(
            format=EXIT_DATASET_FORMAT,
            format_version=EXIT_DATASET_VERSION,
            exits=list(EXITS))).save(path)
    samples = load_exit_samples(path)
    assert samples.exits == EXITS and samples.gate_inputs.shape == (3, 4)
    assert samples.quality[1, 2] == 1.0 and samples.quality[0, 2] == 0.5
    assert samples.meta['exits'] == list(EXITS)
    with pytest.raises(ValueError, match='exits'):
        load_exit_samples(path, expected_exits=(2, 4, 6))
    # a file without gate_input_levels holds the 1/32 input only
    with pytest.raises(ValueError, match='gate_input_levels'):
        load_exit_samples(path, input_levels=2)
    # nor the gate input after the first encoder layer
    with pytest.raises(ValueError, match='no layer1_gate_inputs'):
        load_exit_samples(path, input_depth=1)
    with pytest.raises(ValueError, match='input_depth must be 0 or 1'):
        load_exit_samples(path, input_depth=2)


def test_load_multi_scale_gate_inputs(tmp_path):
    pq = np.full((2, 5, 3), 0.5)
    path = str(tmp_path / 'derived.npz')
    ExitDataset(
        image_ids=[1, 2],
        exits=EXITS,
        pq=pq,
        sq=pq,
        rq=pq,
        gate_inputs=np.arange(12, dtype=np.float32).reshape(2, 6),
        meta=dict(
            format=EXIT_DATASET_FORMAT,
            format_version=EXIT_DATASET_VERSION,
            exits=list(EXITS),
            gate_input_levels=3)).save(path)
    assert load_exit_samples(path).gate_inputs.tolist() == [[0, 1], [6, 7]]
    wide = load_exit_samples(path, input_levels=3)
    assert wide.gate_inputs.shape == (2, 6)
    gate = train_gate(
        load_exit_samples(path, input_levels=2), 0.0, input_levels=2, iters=2)
    assert gate.in_channels == 4 and gate.input_levels == 2


def test_bad_samples_are_reported():
    with pytest.raises(ValueError, match=r'quality must have shape \(2, 5\)'):
        ExitSamples(torch.zeros(2, 4), torch.zeros(2, 3), EXITS)
    with pytest.raises(ValueError, match='NaN'):
        ExitSamples(torch.zeros(1, 4), torch.full((1, 5), float('nan')), EXITS)
