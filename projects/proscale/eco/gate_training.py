# Copyright (c) The proscale Authors. All rights reserved.
"""Training the ECO-M2F exit gate on cached gate inputs (step C).

The gate trains on :class:`~.exit_samples.ExitSamples` (read from a derived
exit dataset) without running the segmentation model: a few hundred
optimiser steps of a linear layer, seconds on a CPU.
"""
import argparse
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmdet.registry import MODELS
from torch import Tensor

from ..models.gates import ExitGate, exit_utility, hard_exit_targets
from ..utils import torch_threads
from ..utils.cli import positive_int
from .exit_samples import ExitSamples

# Names of the gate losses on the command line.
GATE_LOSSES = {
    'hard_ce': 'ExitHardCELoss',
    'soft_ce': 'ExitSoftCELoss',
    'soft_mse': 'ExitSoftMSELoss',
}


def build_gate_loss(loss: str = 'hard_ce',
                    temperature: float = 0.05) -> torch.nn.Module:
    """Build a gate loss by its command-line name.

    Args:
        loss (str): One of :data:`GATE_LOSSES`. Defaults to 'hard_ce'.
        temperature (float): Target temperature of the soft losses.

    Returns:
        nn.Module: The loss, called as ``loss(logits, utility)``.
    """
    if loss not in GATE_LOSSES:
        raise ValueError(
            f'unknown gate loss {loss!r}; choose from {sorted(GATE_LOSSES)}')
    cfg = dict(type=GATE_LOSSES[loss])
    if loss != 'hard_ce':
        cfg['temperature'] = temperature
    return MODELS.build(cfg)


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

    The inputs are standardised with the training statistics during
    training and the standardisation is then folded into the gate's first
    layer, so the returned gate runs on raw features. Batches are drawn by
    reshuffled passes over the samples. Initialisation and shuffling use
    private generators seeded by ``seed``: equal arguments give an identical
    gate and the global RNG is left untouched.

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
    utility = exit_utility(samples.quality, samples.exits, beta)
    mean = samples.gate_inputs.mean(dim=0)
    std = samples.gate_inputs.std(dim=0, unbiased=False).clamp(min=1e-6)
    inputs = (samples.gate_inputs - mean) / std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gate = ExitGate(
            exits=samples.exits,
            in_channels=inputs.shape[1],
            hidden_channels=hidden_channels,
            input_levels=input_levels,
            input_depth=input_depth)
    criterion = build_gate_loss(loss, temperature)
    optimizer = torch.optim.AdamW(
        gate.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    batches: List[Tensor] = []
    gate.train()
    # The gate's operations are far too small to gain from threads.
    with torch_threads(1):
        for _ in range(iters):
            if not batches:
                batches = list(
                    torch.randperm(len(inputs),
                                   generator=generator).split(batch_size))
            index = batches.pop()
            optimizer.zero_grad()
            criterion(gate(inputs[index]), utility[index]).backward()
            optimizer.step()
    gate.eval()
    gate.fold_input_normalization(mean, std)
    gate.trained.fill_(True)
    return gate


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
        dict: ``num_images``; ``accuracy`` (share of images sent to their
        target exit); ``histogram`` (exit -> share of images);
        ``mean_depth`` and ``target_mean_depth`` (mean encoder layers of the
        gate's and of the target choices); ``mean_quality`` and
        ``target_mean_quality`` (mean per-image quality at those exits);
        with ``exit_gflops`` also ``mean_gflops`` and ``target_mean_gflops``.
    """
    if tuple(gate.exits) != samples.exits:
        raise ValueError(f'the gate chooses among exits {gate.exits} but '
                         f'the samples have exits {samples.exits}')
    if len(samples) == 0:
        raise ValueError('cannot evaluate a gate on zero images')
    choice = gate.eval()(samples.gate_inputs).argmax(dim=1)
    target = hard_exit_targets(
        exit_utility(samples.quality, samples.exits, beta))
    rows = torch.arange(len(samples))
    depth = exit_costs(samples.exits)
    counts = torch.bincount(choice, minlength=len(samples.exits))
    metrics = dict(
        num_images=len(samples),
        accuracy=float((choice == target).double().mean()),
        histogram={
            k: float(c) / len(samples)
            for k, c in zip(samples.exits, counts.tolist())
        },
        mean_depth=float(depth[choice].mean()),
        target_mean_depth=float(depth[target].mean()),
        mean_quality=float(samples.quality[rows, choice].mean()),
        target_mean_quality=float(samples.quality[rows, target].mean()))
    if exit_gflops is not None:
        gflops = exit_costs(samples.exits, exit_gflops, 'gflops')
        metrics.update(
            mean_gflops=float(gflops[choice].mean()),
            target_mean_gflops=float(gflops[target].mean()))
    return metrics


def gate_meta(gate: ExitGate, beta: float, loss: str,
              **extra) -> Dict[str, object]:
    """Describe a trained gate for its checkpoint.

    Args:
        gate (ExitGate): The gate.
        beta (float): The trade-off it was trained with.
        loss (str): Its loss name.
        **extra: Further JSON-serialisable entries (metrics, provenance).

    Returns:
        dict: ``gate_cfg`` (the config that rebuilds the gate), ``beta``,
        ``loss`` and the extra entries.
    """
    return dict(
        gate_cfg=dict(
            type='ExitGate',
            exits=list(gate.exits),
            in_channels=gate.in_channels,
            hidden_channels=gate.hidden_channels,
            input_levels=gate.input_levels,
            input_depth=gate.input_depth),
        beta=beta,
        loss=loss,
        **extra)


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
