# Copyright (c) The proscale Authors. All rights reserved.
"""Training the ECO-M2F exit gate on cached gate inputs (step C).

The gate trains on :class:`~.exit_samples.ExitSamples` (read from a derived
exit dataset) without running the segmentation model: a few hundred
optimiser steps of a linear layer, seconds on a CPU.
"""
import argparse
import itertools
import tempfile
from typing import Any, Dict, Optional, Sequence

import torch
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmengine.visualization import Visualizer
from torch import Tensor

from ..engine.hooks import capture_random_states, restore_random_states
from ..evaluation.metrics import exit_choice_figures
from ..models.gates import (GATE_LOSSES, ExitGate, build_gate_loss,
                            exit_utility, gate_meta)
from ..utils.cli import positive_int
from .exit_samples import ExitSamples

__all__ = [
    'GATE_LOSSES', 'add_gate_training_arguments', 'build_gate_loss',
    'evaluate_gate', 'exit_costs', 'format_gate_metrics', 'gate_meta',
    'gate_runner_cfg', 'gate_training_kwargs', 'train_gate'
]

# Experiment names of train_gate's runners (one per gate; mmengine keeps a
# message hub per name).
_RUN_IDS = itertools.count()
# The logger and visualizer all of train_gate's runners share.
_GATE_RUN_NAME = 'proscale_gate_training'


class _GateRunner(Runner):
    """A ``Runner`` for the many small gates of the gate tools.

    The gates train in a fraction of a second each, so it skips what costs
    time per runner and serves no one there: the environment report
    (``collect_env`` starts a compiler), a log file and a visualizer figure
    per run. All runs share one console logger and one visualizer without
    backends.
    """

    def _log_env(self, env_cfg: dict) -> None:
        """Report no environment."""

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        """The shared console logger (no log file)."""
        if MMLogger.check_instance_created(_GATE_RUN_NAME):
            logger = MMLogger.get_instance(_GATE_RUN_NAME)
            logger.setLevel(log_level)
            return logger
        return MMLogger.get_instance(_GATE_RUN_NAME, log_level=log_level)

    def build_visualizer(self, visualizer=None) -> Visualizer:
        """The shared visualizer without backends."""
        return Visualizer.get_instance(_GATE_RUN_NAME)


def gate_runner_cfg(samples: ExitSamples,
                    beta: float,
                    loss: str = 'hard_ce',
                    temperature: float = 0.05,
                    hidden_channels: Optional[int] = None,
                    input_levels: int = 1,
                    input_depth: int = 0,
                    iters: int = 500,
                    batch_size: int = 256,
                    lr: float = 5e-2,
                    weight_decay: float = 1e-4,
                    seed: int = 0) -> Dict[str, Any]:
    """The runner arguments that train a gate on samples in memory.

    The model, data, loop and optimiser of
    ``configs/eco_m2f/_base_/eco_m2f_gate.py``, with the samples in memory
    and no logging, checkpoints or validation (the gate tools train many
    gates and print their own figures); :func:`train_gate` runs them in a
    light ``Runner`` subclass.

    Args:
        samples (ExitSamples): Training samples.
        beta, loss, temperature, hidden_channels, input_levels,
        input_depth, iters, batch_size, lr, weight_decay, seed: See
            :func:`train_gate`.

    Returns:
        dict: Keyword arguments of ``mmengine.runner.Runner`` (all but
        ``work_dir``).
    """
    return dict(
        model=dict(
            type='ExitGateModel',
            gate=dict(
                type='ExitGate',
                exits=samples.exits,
                in_channels=samples.gate_inputs.shape[1],
                hidden_channels=hidden_channels,
                input_levels=input_levels,
                input_depth=input_depth),
            beta=beta,
            loss=loss,
            temperature=temperature),
        train_dataloader=dict(
            dataset=dict(
                type='ExitGateDataset',
                samples=samples,
                input_levels=input_levels,
                input_depth=input_depth),
            sampler=dict(type='ExitGateBatchSampler', batch_size=batch_size),
            batch_size=None,
            collate_fn=dict(type='exit_gate_collate'),
            num_workers=0),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters),
        optim_wrapper=dict(
            optimizer=dict(
                type='AdamW', lr=lr, weight_decay=weight_decay, fused=True)),
        default_hooks=dict(
            runtime_info=None,
            timer=None,
            sampler_seed=None,
            logger=None,
            param_scheduler=None,
            checkpoint=None),
        custom_hooks=[dict(type='ExitGateTrainingHook', out_file=None)],
        randomness=dict(seed=seed),
        default_scope='mmdet',
        log_level='WARNING',
        experiment_name=f'{_GATE_RUN_NAME}_{next(_RUN_IDS)}')


def train_gate(samples: ExitSamples,
               beta: float,
               loss: str = 'hard_ce',
               temperature: float = 0.05,
               hidden_channels: Optional[int] = None,
               input_levels: int = 1,
               input_depth: int = 0,
               iters: int = 500,
               batch_size: int = 256,
               lr: float = 5e-2,
               weight_decay: float = 1e-4,
               seed: int = 0) -> ExitGate:
    """Train an exit gate on cached gate inputs.

    Runs the gate training of ``tools/train.py`` with
    ``configs/eco_m2f/_base_/eco_m2f_gate.py`` (``ExitGateModel``,
    ``ExitGateDataset``, ``ExitGateBatchSampler``, ``ExitGateTrainingHook``
    in an mmengine ``Runner``) on samples in memory: the inputs are
    standardised with the training statistics during training and the
    standardisation is then folded into the gate's first layer, so the
    returned gate runs on raw features. Batches are drawn by reshuffled
    passes over the samples. The runner is seeded with ``seed`` (the
    initialisation; the sampler's permutations use a private generator
    seeded by it): equal arguments give an identical gate, and the global
    random states are restored afterwards.

    Args:
        samples (ExitSamples): Training samples.
        beta (float): Cost of one encoder layer in quality units.
        loss (str): Loss name, see :data:`GATE_LOSSES`.
        temperature (float): Target temperature of the soft losses.
        hidden_channels (int, optional): Hidden width of the MLP gate; None
            for the authors' linear gate.
        input_levels (int): Encoder scales in the samples' gate inputs
            (recorded in the gate). Defaults to 1.
        input_depth (int): Encoder layers run before the samples' gate
            inputs were pooled (recorded in the gate). Defaults to 0.
        iters (int): Optimiser steps.
        batch_size (int): Images per optimiser step.
        lr (float): AdamW learning rate.
        weight_decay (float): AdamW weight decay.
        seed (int): Seed of initialisation and shuffling.

    Returns:
        ExitGate: The trained gate, in eval mode.
    """
    if len(samples) == 0:
        raise ValueError('cannot train a gate on zero images')
    if not beta >= 0:
        raise ValueError(f'beta must be a number >= 0, got {beta}')
    build_gate_loss(loss, temperature)  # an unknown loss fails before a run
    cfg = gate_runner_cfg(samples, beta, loss, temperature, hidden_channels,
                          input_levels, input_depth, iters, batch_size, lr,
                          weight_decay, seed)
    states = capture_random_states()
    try:
        with tempfile.TemporaryDirectory() as work_dir:
            runner = _GateRunner(work_dir=work_dir, **cfg)
            runner.train()
    finally:
        restore_random_states(states)
    return runner.model.trained_gate()


def add_gate_training_arguments(parser: argparse.ArgumentParser,
                                iters_choices: bool = False) -> None:
    """Add the options of :func:`train_gate` to a gate tool.

    ``--loss``, ``--temperature``, ``--hidden-channels``, ``--iters``,
    ``--batch-size``, ``--lr``, ``--weight-decay`` and ``--seed``, with
    :func:`train_gate`'s defaults; :func:`gate_training_kwargs` reads them.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        iters_choices (bool): ``--iters`` takes one or more training lengths
            (a list) to choose from on held-out images. Defaults to False.
    """
    parser.add_argument(
        '--loss', choices=sorted(GATE_LOSSES), default='hard_ce')
    parser.add_argument(
        '--temperature',
        type=float,
        default=0.05,
        help='temperature of the soft targets softmax(u / T)')
    parser.add_argument(
        '--hidden-channels',
        type=int,
        help='hidden width of an MLP gate (default: the linear gate)')
    if iters_choices:
        parser.add_argument(
            '--iters',
            type=positive_int,
            nargs='+',
            default=[500],
            help='optimiser steps of the gate; several: chosen on the '
            'held-out share together with beta')
    else:
        parser.add_argument('--iters', type=positive_int, default=500)
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--lr', type=float, default=5e-2)
    parser.add_argument('--weight-decay', type=float, default=1e-4)
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seed of the training (and of a held-out split)')


def gate_training_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """The :func:`train_gate` arguments of :func:`add_gate_training_arguments`.

    Args:
        args (argparse.Namespace): The parsed options.

    Returns:
        dict: Keyword arguments of :func:`train_gate` (all but ``samples``
        and ``beta``).
    """
    return dict(
        loss=args.loss,
        temperature=args.temperature,
        hidden_channels=args.hidden_channels,
        iters=args.iters,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed)


def exit_costs(exits: Sequence[int],
               exit_gflops: Optional[Sequence[float]] = None,
               unit: str = 'depth') -> Tensor:
    """Per-exit cost in the unit of a budget.

    Args:
        exits (Sequence[int]): The exits.
        exit_gflops (Sequence[float], optional): GFLOPs of the whole model at
            every exit; required for ``unit='gflops'``.
        unit (str): 'depth' (encoder layers) or 'gflops'.

    Returns:
        Tensor: Costs, shape (E, ), float64.
    """
    if unit == 'depth':
        return torch.tensor(exits, dtype=torch.float64)
    if unit != 'gflops':
        raise ValueError(f"unit must be 'depth' or 'gflops', got {unit!r}")
    if exit_gflops is None:
        raise ValueError('a GFLOPs budget needs the GFLOPs of every exit')
    costs = torch.tensor(exit_gflops, dtype=torch.float64)
    if costs.shape != (len(exits), ):
        raise ValueError(f'need one GFLOPs value per exit {tuple(exits)}, got '
                         f'{list(exit_gflops)}')
    return costs


@torch.no_grad()
def evaluate_gate(gate: ExitGate,
                  samples: ExitSamples,
                  beta: float,
                  exit_gflops: Optional[Sequence[float]] = None) -> dict:
    """Measure a gate against the targets of ``beta``.

    Args:
        gate (ExitGate): The gate (its exits must equal the samples').
        samples (ExitSamples): Samples to evaluate on (at least one).
        beta (float): Defines the targets.
        exit_gflops (Sequence[float], optional): Model GFLOPs per exit.

    Returns:
        dict: The figures of
        :func:`~proscale.evaluation.metrics.exit_choice_figures` for the
        gate's choices.
    """
    if tuple(gate.exits) != samples.exits:
        raise ValueError(f'the gate chooses among exits {gate.exits} but '
                         f'the samples have exits {samples.exits}')
    if len(samples) == 0:
        raise ValueError('cannot evaluate a gate on zero images')
    choice = gate.eval()(samples.gate_inputs).argmax(dim=1)
    return exit_choice_figures(
        choice, samples.quality,
        exit_utility(samples.quality, samples.exits, beta), samples.exits,
        exit_gflops)


def format_gate_metrics(metrics: dict, title: str) -> str:
    """Format :func:`evaluate_gate`'s metrics as a few text lines.

    Args:
        metrics (dict): Output of :func:`evaluate_gate`.
        title (str): The first line.

    Returns:
        str: The formatted metrics.
    """
    histogram = '  '.join(f'{k}: {share:6.1%}'
                          for k, share in metrics['histogram'].items())
    lines = [
        f"{title} ({metrics['num_images']} images)",
        f"  gate accuracy           {metrics['accuracy']:.1%}",
        f'  exit histogram          {histogram}',
        f"  expected encoder depth  {metrics['mean_depth']:.3f} "
        f"(targets {metrics['target_mean_depth']:.3f})",
        f"  mean per-image quality  {metrics['mean_quality']:.4f} "
        f"(targets {metrics['target_mean_quality']:.4f})",
    ]
    if 'mean_gflops' in metrics:
        lines.append(f"  expected GFLOPs         {metrics['mean_gflops']:.3f} "
                     f"(targets {metrics['target_mean_gflops']:.3f})")
    return '\n'.join(lines)
