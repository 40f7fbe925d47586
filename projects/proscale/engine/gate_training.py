"""Training the ECO-M2F exit gate on cached gate inputs (step C).

The derived dataset (step B) stores, per image, the gate input (the pooled
projected 1/32 features) and the quality at every exit, so the gate trains
without running the segmentation model: a few thousand optimiser steps of a
linear layer, seconds on a CPU.

Beyond the paper, :func:`search_beta` picks ``beta`` automatically for a
compute budget (mean encoder layers or mean GFLOPs): as ``beta`` grows the
targets move monotonically to shallower exits, so the held-out cost of the
trained gate is (up to training noise) a decreasing function of ``beta`` and
a bisection on ``log(beta)``, started from the ``beta`` whose targets meet
the budget, finds where it crosses the budget. Of every ``beta`` tried, the
one whose gate stays within the budget with the highest held-out quality
wins. As this choice is made on the held-out split, the held-out figures of
the chosen gate are slightly optimistic.
"""
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmdet.registry import MODELS
from torch import Tensor

from ..evaluation import load_exit_dataset
from ..models.gates import ExitGate, exit_utility, hard_exit_targets

# Names of the gate losses on the command line.
GATE_LOSSES = {
    'hard_ce': 'ExitHardCELoss',
    'soft_ce': 'ExitSoftCELoss',
    'soft_mse': 'ExitSoftMSELoss',
}


@dataclass
class ExitSamples:
    """Gate inputs and per-exit quality of a set of images.

    Args:
        gate_inputs (Tensor): Pooled gate features, shape (N, C).
        quality (Tensor): Quality (e.g. per-image PQ as a fraction) at every
            exit, shape (N, E), column ``j`` belonging to ``exits[j]``.
        exits (tuple[int]): The exits, strictly increasing.
        image_ids (np.ndarray, optional): Image ids, shape (N, ).
        meta (dict, optional): Provenance of the samples (the derived
            file's meta).
    """
    gate_inputs: Tensor
    quality: Tensor
    exits: Tuple[int, ...]
    image_ids: Optional[np.ndarray] = None
    meta: Optional[dict] = None

    def __post_init__(self) -> None:
        self.gate_inputs = torch.as_tensor(
            self.gate_inputs, dtype=torch.float32)
        self.quality = torch.as_tensor(self.quality, dtype=torch.float64)
        self.exits = tuple(int(k) for k in self.exits)
        num = len(self.gate_inputs)
        if self.gate_inputs.dim() != 2:
            raise ValueError('gate_inputs must have shape (N, C), got '
                             f'{tuple(self.gate_inputs.shape)}')
        if self.quality.shape != (num, len(self.exits)):
            raise ValueError(
                f'quality must have shape ({num}, {len(self.exits)}) for '
                f'{num} images and exits {self.exits}, got '
                f'{tuple(self.quality.shape)}')
        for name in ('gate_inputs', 'quality'):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f'{name} holds NaN or infinite values')
        if self.image_ids is not None and len(self.image_ids) != num:
            raise ValueError(f'image_ids has {len(self.image_ids)} entries '
                             f'for {num} images')

    def __len__(self) -> int:
        return len(self.gate_inputs)

    def subset(self, index: Union[Tensor, np.ndarray]) -> 'ExitSamples':
        """Return the samples at ``index`` (an index array)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return ExitSamples(
            gate_inputs=self.gate_inputs[index],
            quality=self.quality[index],
            exits=self.exits,
            image_ids=None
            if self.image_ids is None else self.image_ids[index.numpy()],
            meta=self.meta)


def load_exit_samples(path: str,
                      metric: str = 'pq',
                      group: str = 'All',
                      expected_exits: Optional[Sequence[int]] = None
                      ) -> ExitSamples:
    """Load the gate's training data from a derived exit dataset file.

    A quality that is NaN (no category with ``tp + fp + fn > 0``: the image
    has no ground-truth segment of the group and the exit predicts none) is
    read as 1, a perfect prediction: predicting any segment there would give
    0.

    Args:
        path (str): A file written by ``tools/eco/derive_exit_dataset.py``.
        metric (str): 'pq', 'sq' or 'rq'. Defaults to 'pq' (the paper's).
        group (str): 'All', 'Things' or 'Stuff'. Defaults to 'All'.
        expected_exits (Sequence[int], optional): Exits the file must have.

    Returns:
        ExitSamples: Gate inputs, quality, image ids and meta of every image.
    """
    dataset = load_exit_dataset(path, expected_exits)
    quality = np.nan_to_num(dataset.quality(metric, group), nan=1.0)
    return ExitSamples(
        gate_inputs=torch.from_numpy(dataset.gate_inputs),
        quality=torch.from_numpy(quality),
        exits=tuple(dataset.exits.tolist()),
        image_ids=dataset.image_ids,
        meta=dataset.meta)


def split_samples(samples: ExitSamples,
                  val_fraction: float = 0.2,
                  seed: int = 0) -> Tuple[ExitSamples, ExitSamples]:
    """Split samples into a training and a held-out part, reproducibly.

    Args:
        samples (ExitSamples): All samples (at least 2).
        val_fraction (float): Share of held-out images, in (0, 1); at least
            one image goes to each part. Defaults to 0.2.
        seed (int): Seed of the permutation. Defaults to 0.

    Returns:
        tuple[ExitSamples, ExitSamples]: Training and held-out samples.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
    num = len(samples)
    if num < 2:
        raise ValueError(f'need at least 2 images to split, got {num}')
    num_val = min(max(int(round(num * val_fraction)), 1), num - 1)
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return samples.subset(perm[num_val:]), samples.subset(perm[:num_val])


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


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block.

    The gate's operations are far too small to gain from threads; on a busy
    machine, thread hand-offs slow its training down by more than 10x.
    """
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(num_threads)


def train_gate(samples: ExitSamples,
               beta: float,
               loss: str = 'hard_ce',
               temperature: float = 0.05,
               hidden_channels: Optional[int] = None,
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
            hidden_channels=hidden_channels)
    criterion = build_gate_loss(loss, temperature)
    optimizer = torch.optim.AdamW(
        gate.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    batches: List[Tensor] = []
    gate.train()
    with _single_thread():
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
        raise ValueError(
            f'need one GFLOPs value per exit {tuple(exits)}, got '
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


@dataclass
class BetaTrial:
    """One ``beta`` tried by :func:`search_beta`.

    Attributes:
        beta (float): The trade-off.
        cost (float): Held-out mean cost of its gate, in the budget's unit.
        quality (float): Held-out mean per-image quality of its gate.
        gate (ExitGate): The gate trained with it.
    """
    beta: float
    cost: float
    quality: float
    gate: ExitGate = field(repr=False)


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
                **train_kwargs) -> Tuple[BetaTrial, List[BetaTrial]]:
    """Find the ``beta`` whose gate best meets a compute budget.

    ``beta = 0`` (the most accurate gate) is tried first and wins if it fits.
    Otherwise the ``beta`` whose training targets meet the budget
    (:func:`target_beta`, no training) gives a first guess, and ``log(beta)``
    is bisected for ``num_steps`` steps within ``spread`` times around it on
    the held-out mean cost of the gate trained with each ``beta``. If no
    trial fits, the gate of the largest ``beta`` of ``beta_bounds`` is
    tried too. With quality in [0, 1] and exits at least one layer apart,
    ``beta > 1`` sends every target to the shallowest exit, so the default
    bounds cover every trade-off.

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
        **train_kwargs: Passed to :func:`train_gate`.

    Returns:
        tuple[BetaTrial, list[BetaTrial]]: The chosen trial (within budget
        with the highest held-out quality, ties to the cheaper; the cheapest
        trial when none fits) and every trial in the order tried.
    """
    if not spread > 1:
        raise ValueError(f'spread must be > 1, got {spread}')
    trials: List[BetaTrial] = []

    def run(beta: float) -> BetaTrial:
        gate = train_gate(train, beta, **train_kwargs)
        with torch.no_grad():
            choice = gate(val.gate_inputs).argmax(dim=1)
        trials.append(
            BetaTrial(
                beta=beta,
                cost=float(costs[choice].mean()),
                quality=float(val.quality[torch.arange(len(val)),
                                          choice].mean()),
                gate=gate))
        return trials[-1]

    if run(0.0).cost > budget:
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
            run(beta_bounds[1])
    feasible = [trial for trial in trials if trial.cost <= budget]
    if feasible:
        best = max(feasible, key=lambda t: (t.quality, -t.cost))
    else:
        best = min(trials, key=lambda t: (t.cost, -t.quality))
    return best, trials


@dataclass
class GateFit:
    """A trained gate with its trade-off and held-out figures.

    Attributes:
        gate (ExitGate): The gate, trained on the training split.
        beta (float): The trade-off it was trained with.
        train_metrics (dict): :func:`evaluate_gate` on the training split.
        val_metrics (dict): :func:`evaluate_gate` on the held-out split.
        trials (list[BetaTrial]): The betas tried by the budget search
            (empty for a given beta).
    """
    gate: ExitGate
    beta: float
    train_metrics: dict
    val_metrics: dict
    trials: List[BetaTrial]


def fit_gate(samples: ExitSamples,
             beta: Optional[float] = None,
             budget: Optional[float] = None,
             budget_unit: str = 'depth',
             exit_gflops: Optional[Sequence[float]] = None,
             val_fraction: float = 0.2,
             split_seed: int = 0,
             search_steps: int = 8,
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
        val_fraction (float): Held-out share. Defaults to 0.2.
        split_seed (int): Seed of the split. Defaults to 0.
        search_steps (int): Bisection steps of the budget search.
        **train_kwargs: Passed to :func:`train_gate`.

    Returns:
        GateFit: The gate and its figures.
    """
    if (beta is None) == (budget is None):
        raise ValueError('give exactly one of beta and budget')
    train, val = split_samples(samples, val_fraction, split_seed)
    trials: List[BetaTrial] = []
    if beta is None:
        costs = exit_costs(samples.exits, exit_gflops, budget_unit)
        best, trials = search_beta(
            train, val, budget, costs, num_steps=search_steps, **train_kwargs)
        gate, beta = best.gate, best.beta
    else:
        gate = train_gate(train, beta, **train_kwargs)
    return GateFit(
        gate=gate,
        beta=beta,
        train_metrics=evaluate_gate(gate, train, beta, exit_gflops),
        val_metrics=evaluate_gate(gate, val, beta, exit_gflops),
        trials=trials)


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
            hidden_channels=gate.hidden_channels),
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
