# Copyright (c) The proscale Authors. All rights reserved.
"""Settings of the end-to-end demo: dataset size, training recipe, budgets.

:data:`PRESETS` holds the two sizes the demo runs at: ``'full'`` (``make
demo``: about 15 minutes on 2 CPU cores) and ``'small'`` (a handful of
images and iterations, for the test suite). Every setting ends up on the
command lines of the tools the demo runs (the recipe as ``--cfg-options`` of
the repository's configs), so a stage reruns when a setting it uses changes.
"""
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class DemoSettings:
    """What the demo generates, trains and measures.

    Args:
        num_train (int): Synthetic training images.
        num_val (int): Synthetic validation images (every model is evaluated
            on all of them).
        image_size (int): Side of the square synthetic images.
        data_seed (int): Seed of the synthetic dataset.
        train_iters (int): Training iterations of the baseline and of
            PRO-SCALE (one recipe for both); at least 2. Every training
            runs the configs' schedule (linear warm-up over the first 1/15,
            then cosine decay to 1% of the lr) rescaled to its length with
            ``tools/train.py --max-iters``.
        seed (int): Random seed of every training (``randomness.seed``).
        lr (float, optional): AdamW learning rate of every training; None
            keeps the configs'.
        parent_iters (int): Training iterations of the ECO-M2F parent.
        parent_from_baseline (bool): Start the parent from the trained
            baseline (same architecture and weights layout; its full depth
            is the baseline) instead of from scratch, so that a short
            weighted-stochastic-depth training teaches the early exits.
        exits_per_iter (int): Exits the ECO-M2F parent trains per iteration
            (1 is the authors' weighted stochastic depth, see
            ``configs/eco_m2f/_base_/eco_m2f_parent.py``).
        beta (float): ECO-M2F trade-off of the gate targets (utility
            ``q_k - beta * k``).
        gate_iters (int): Optimiser steps of the gate training.
        log_interval (int): Iterations between two training log lines.
        num_visualisations (int): Validation images to draw with the gate's
            exit.
        benchmark_runs (int): Timed rounds of the latency benchmark.
        benchmark_warmup (int): Untimed rounds before them.
        threads (int, optional): torch CPU threads for the whole demo; None
            keeps torch's default (all cores).
    """
    num_train: int = 400
    num_val: int = 250
    image_size: int = 128
    data_seed: int = 0
    train_iters: int = 600
    seed: int = 0
    lr: Optional[float] = None
    parent_iters: int = 200
    parent_from_baseline: bool = True
    exits_per_iter: int = 1
    beta: float = 0.002
    gate_iters: int = 500
    log_interval: int = 10
    num_visualisations: int = 6
    benchmark_runs: int = 10
    benchmark_warmup: int = 2
    threads: Optional[int] = None

    def __post_init__(self) -> None:
        positive = ('num_train', 'num_val', 'image_size', 'train_iters',
                    'parent_iters', 'exits_per_iter', 'gate_iters',
                    'log_interval', 'benchmark_runs')
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f'demo setting {name} must be >= 1, got '
                                 f'{getattr(self, name)}')
        if self.train_iters < 2:
            raise ValueError('demo setting train_iters must be >= 2, got '
                             f'{self.train_iters}')
        if self.beta < 0:
            raise ValueError(f'demo setting beta must be >= 0, got '
                             f'{self.beta}')

    def to_dict(self) -> Dict[str, Any]:
        """Return the settings as a plain dict."""
        return asdict(self)

    def with_overrides(self, **overrides: Any) -> 'DemoSettings':
        """Return a copy with some settings changed."""
        return replace(self, **overrides)


PRESETS: Dict[str, DemoSettings] = dict(
    full=DemoSettings(),
    small=DemoSettings(
        num_train=8,
        num_val=4,
        image_size=64,
        train_iters=2,
        parent_iters=2,
        gate_iters=20,
        log_interval=1,
        num_visualisations=2,
        benchmark_runs=2,
        benchmark_warmup=0))
"""The demo's sizes: ``'full'`` (``make demo``) and ``'small'`` (tests)."""
