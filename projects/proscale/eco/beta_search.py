# Copyright (c) The proscale Authors. All rights reserved.
"""Automatic choice of the ECO-M2F trade-off ``beta`` for a compute budget.

Beyond the paper: given a budget in mean encoder layers or mean GFLOPs,
:func:`search_beta` finds the ``beta`` whose trained gate meets it best on
held-out derived data. As ``beta`` grows the targets move monotonically to
shallower exits, so the targets' mean cost is a non-increasing step function
of ``beta`` (:func:`target_beta` bisects it without training), and the
held-out cost of the trained gate follows it up to training noise. A
bisection on ``log(beta)`` around the targets' answer finds where the gate's
cost crosses the budget; of every ``beta`` tried, the one whose gate stays
within the budget with the highest held-out quality wins. Given several
training lengths (``iters``), the search runs for each and the best
``(beta, iters)`` pair wins. As this choice is made on the held-out split,
the chosen gate's held-out figures are slightly optimistic.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..models.gates import ExitGate, exit_utility, hard_exit_targets
from .exit_samples import ExitSamples, split_samples
from .gate_training import evaluate_gate, exit_costs, train_gate


@dataclass
class BetaTrial:
    """One ``(beta, iters)`` pair tried on the held-out split.

    Attributes:
        beta (float): The trade-off.
        iters (int): The gate's optimiser steps.
        cost (float): Held-out mean cost of its gate, in the budget's unit.
        quality (float): Held-out mean per-image quality of its gate.
        utility (float): Held-out mean utility ``q_k - beta * k`` of its
            gate's choices.
        gate (ExitGate): The gate trained with it.
    """
    beta: float
    iters: int
    cost: float
    quality: float
    utility: float
    gate: ExitGate = field(repr=False)


def _iters_choices(iters: Union[int, Sequence[int]]) -> List[int]:
    """The training lengths to try, ascending and without repeats."""
    choices = sorted({iters} if isinstance(iters, int) else set(iters))
    if not choices or choices[0] < 1:
        raise ValueError(f'iters must be positive integers, got {iters}')
    return choices


def try_gate(train: ExitSamples, val: ExitSamples, beta: float, iters: int,
             costs: Tensor, **train_kwargs) -> BetaTrial:
    """Train a gate and measure it on the held-out split.

    Args:
        train (ExitSamples): Samples the gate is trained on.
        val (ExitSamples): Held-out samples it is measured on.
        beta (float): The trade-off.
        iters (int): Optimiser steps.
        costs (Tensor): Cost of every exit, shape (E, ).
        **train_kwargs: Passed to :func:`train_gate`.

    Returns:
        BetaTrial: The gate with its held-out figures.
    """
    gate = train_gate(train, beta, iters=iters, **train_kwargs)
    with torch.no_grad():
        choice = gate(val.gate_inputs).argmax(dim=1)
    rows = torch.arange(len(val))
    utility = exit_utility(val.quality, val.exits, beta)
    return BetaTrial(
        beta=beta,
        iters=iters,
        cost=float(costs[choice].mean()),
        quality=float(val.quality[rows, choice].mean()),
        utility=float(utility[rows, choice].mean()),
        gate=gate)


def target_cost(samples: ExitSamples, beta: float, costs: Tensor) -> float:
    """Mean cost of the target exits of ``beta`` (no gate involved).

    Args:
        samples (ExitSamples): The samples.
        beta (float): The trade-off.
        costs (Tensor): Cost of every exit, shape (E, ).

    Returns:
        float: The mean cost of the targets.
    """
    target = hard_exit_targets(
        exit_utility(samples.quality, samples.exits, beta))
    return float(costs[target].mean())


def target_beta(samples: ExitSamples,
                budget: float,
                costs: Tensor,
                beta_bounds: Tuple[float, float] = (1e-6, 1.0),
                num_steps: int = 60) -> float:
    """Smallest ``beta`` whose targets meet a budget on average.

    The target exit of every image moves to shallower exits as ``beta``
    grows, so the targets' mean cost is a non-increasing step function of
    ``beta`` and a bisection on ``log(beta)`` finds where it crosses the
    budget, without training anything.

    Args:
        samples (ExitSamples): The samples.
        budget (float): Largest acceptable mean cost of the targets.
        costs (Tensor): Cost of every exit, shape (E, ).
        beta_bounds (tuple[float, float]): Search interval, both > 0.
        num_steps (int): Bisection steps. Defaults to 60.

    Returns:
        float: The smallest ``beta`` in ``beta_bounds`` (to the bisection's
        precision) meeting the budget, or the upper bound if none does.
    """
    low, high = beta_bounds
    if not 0 < low < high:
        raise ValueError(f'beta_bounds must satisfy 0 < low < high, got '
                         f'{beta_bounds}')
    if target_cost(samples, low, costs) <= budget:
        return low
    if target_cost(samples, high, costs) > budget:
        return high
    for _ in range(num_steps):
        middle = math.sqrt(low * high)
        if target_cost(samples, middle, costs) <= budget:
            high = middle
        else:
            low = middle
    return high


def search_beta(train: ExitSamples,
                val: ExitSamples,
                budget: float,
                costs: Tensor,
                num_steps: int = 8,
                spread: float = 10.0,
                beta_bounds: Tuple[float, float] = (1e-6, 1.0),
                iters: Union[int, Sequence[int]] = 500,
                **train_kwargs) -> Tuple[BetaTrial, List[BetaTrial]]:
    """Find the ``beta`` (and training length) that best meets a budget.

    ``beta = 0`` (the most accurate gate) is tried first and wins if it fits.
    Otherwise the ``beta`` whose training targets meet the budget
    (:func:`target_beta`, no training) gives a first guess, and ``log(beta)``
    is bisected for ``num_steps`` steps within ``spread`` times around it on
    the held-out mean cost of the gate trained with each ``beta``. If no
    trial fits, the gate of the largest ``beta`` of ``beta_bounds`` is
    tried too. With quality in [0, 1] and exits at least one layer apart,
    ``beta > 1`` sends every target to the shallowest exit, so the default
    bounds cover every trade-off. With several ``iters``, the search runs
    once per training length (the gate's cost at a ``beta`` depends on it)
    and the choice is made among all their trials.

    Args:
        train (ExitSamples): Samples the gates are trained on.
        val (ExitSamples): Held-out samples the budget is checked on.
        budget (float): Largest acceptable held-out mean cost.
        costs (Tensor): Cost of every exit in the budget's unit, shape (E, )
            (see :func:`exit_costs`).
        num_steps (int): Bisection steps (one gate training each).
            Defaults to 8.
        spread (float): The bisection runs over ``[guess / spread, guess *
            spread]`` (within ``beta_bounds``). Defaults to 10.
        beta_bounds (tuple[float, float]): Range of ``beta``, both > 0.
        iters (int | Sequence[int]): Optimiser steps of the gates, or the
            training lengths to choose from. Defaults to 500.
        **train_kwargs: Passed to :func:`train_gate`.

    Returns:
        tuple[BetaTrial, list[BetaTrial]]: The chosen trial (within budget
        with the highest held-out quality, ties to the cheaper, then to the
        shorter training; the cheapest trial when none fits) and every
        trial in the order tried.
    """
    if not spread > 1:
        raise ValueError(f'spread must be > 1, got {spread}')
    trials: List[BetaTrial] = []
    guess = None
    for num_iters in _iters_choices(iters):

        def run(beta: float) -> BetaTrial:
            trials.append(
                try_gate(train, val, beta, num_iters, costs, **train_kwargs))
            return trials[-1]

        if run(0.0).cost <= budget:
            continue
        if guess is None:
            guess = target_beta(train, budget, costs, beta_bounds)
        low = max(guess / spread, beta_bounds[0])
        high = min(guess * spread, beta_bounds[1])
        for _ in range(num_steps):
            middle = math.sqrt(low * high)
            if run(middle).cost <= budget:
                high = middle
            else:
                low = middle
    if all(trial.cost > budget for trial in trials):
        for num_iters in _iters_choices(iters):
            trials.append(
                try_gate(train, val, beta_bounds[1], num_iters, costs,
                         **train_kwargs))
    feasible = [trial for trial in trials if trial.cost <= budget]
    if feasible:
        best = max(feasible, key=lambda t: (t.quality, -t.cost, -t.iters))
    else:
        best = min(trials, key=lambda t: (t.cost, -t.quality, t.iters))
    return best, trials


def search_iters(train: ExitSamples,
                 val: ExitSamples,
                 beta: float,
                 costs: Tensor,
                 iters: Union[int, Sequence[int]] = 500,
                 **train_kwargs) -> Tuple[BetaTrial, List[BetaTrial]]:
    """Choose the training length of a gate with a given ``beta``.

    Args:
        train (ExitSamples): Samples the gates are trained on.
        val (ExitSamples): Held-out samples they are measured on.
        beta (float): The trade-off.
        costs (Tensor): Cost of every exit, shape (E, ), for the figures.
        iters (int | Sequence[int]): The training lengths to choose from.
            Defaults to 500.
        **train_kwargs: Passed to :func:`train_gate`.

    Returns:
        tuple[BetaTrial, list[BetaTrial]]: The trial with the highest
        held-out mean utility ``q_k - beta * k`` (the gate's objective; ties
        to the shorter training) and every trial, shortest first.
    """
    trials = [
        try_gate(train, val, beta, num_iters, costs, **train_kwargs)
        for num_iters in _iters_choices(iters)
    ]
    return max(trials, key=lambda t: (t.utility, -t.iters)), trials


@dataclass
class GateFit:
    """A trained gate with its trade-off and held-out figures.

    Attributes:
        gate (ExitGate): The final gate: with ``refit``, trained on all
            images with the chosen ``beta`` and ``iters``; otherwise the
            gate trained on the training split.
        beta (float): The trade-off it was trained with.
        iters (int): Its optimiser steps.
        train_metrics (dict): :func:`evaluate_gate` of the final gate on
            the images it was trained on.
        val_metrics (dict): :func:`evaluate_gate` on the held-out split of
            the gate trained on the training split with ``beta`` and
            ``iters`` (the estimate of the final gate's figures on unseen
            images).
        trials (list[BetaTrial]): The ``(beta, iters)`` pairs tried on the
            held-out split (empty for a given beta and a single ``iters``).
    """
    gate: ExitGate
    beta: float
    iters: int
    train_metrics: dict
    val_metrics: dict
    trials: List[BetaTrial]


def fit_gate(samples: ExitSamples,
             beta: Optional[float] = None,
             budget: Optional[float] = None,
             budget_unit: str = 'depth',
             exit_gflops: Optional[Sequence[float]] = None,
             gate_gflops: float = 0.0,
             val_fraction: float = 0.2,
             split_seed: int = 0,
             search_steps: int = 8,
             refit: bool = True,
             iters: Union[int, Sequence[int]] = 500,
             **train_kwargs) -> GateFit:
    """Train a gate for a given ``beta`` or for a compute budget.

    Args:
        samples (ExitSamples): All derived samples; a held-out share
            (``val_fraction``, seeded by ``split_seed``) is kept apart.
        beta (float, optional): The trade-off. Exactly one of ``beta`` and
            ``budget`` must be given.
        budget (float, optional): Largest held-out mean cost, in
            ``budget_unit``; ``beta`` is searched (:func:`search_beta`).
        budget_unit (str): 'depth' (mean encoder layers) or 'gflops'.
        exit_gflops (Sequence[float], optional): Model GFLOPs per exit;
            needed for a GFLOPs budget, reported when given.
        gate_gflops (float): The gate's own GFLOPs per image, added to
            every exit's GFLOPs (budget and figures). Defaults to 0.
        val_fraction (float): Held-out share. Defaults to 0.2.
        split_seed (int): Seed of the split. Defaults to 0.
        search_steps (int): Bisection steps of the budget search.
        refit (bool): Once ``beta`` and ``iters`` are chosen on the held-out
            split, train the final gate on all images with them. Defaults
            to True.
        iters (int | Sequence[int]): Optimiser steps of the gate, or the
            training lengths to choose from on the held-out split (with the
            budget search; for a given ``beta``, by :func:`search_iters`).
            Defaults to 500.
        **train_kwargs: Passed to :func:`train_gate`.

    Returns:
        GateFit: The gate and its figures.
    """
    if (beta is None) == (budget is None):
        raise ValueError('give exactly one of beta and budget')
    if exit_gflops is not None:
        exit_gflops = [g + gate_gflops for g in exit_gflops]
    train, val = split_samples(samples, val_fraction, split_seed)
    if beta is None:
        costs = exit_costs(samples.exits, exit_gflops, budget_unit)
        best, trials = search_beta(
            train,
            val,
            budget,
            costs,
            num_steps=search_steps,
            iters=iters,
            **train_kwargs)
    else:
        costs = exit_costs(samples.exits, exit_gflops,
                           'depth' if exit_gflops is None else 'gflops')
        best, trials = search_iters(
            train, val, beta, costs, iters=iters, **train_kwargs)
        if len(trials) == 1:
            trials = []
    gate, beta = best.gate, best.beta
    val_metrics = evaluate_gate(gate, val, beta, exit_gflops)
    if refit:
        train = samples
        gate = train_gate(samples, beta, iters=best.iters, **train_kwargs)
    return GateFit(
        gate=gate,
        beta=beta,
        iters=best.iters,
        train_metrics=evaluate_gate(gate, train, beta, exit_gflops),
        val_metrics=val_metrics,
        trials=trials)
