# Copyright (c) The proscale Authors. All rights reserved.
"""Weighted stochastic-depth training of an early-exit parent (ECO-M2F step
A)."""
import logging
import math
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
from mmengine.dist import broadcast_object_list
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch import nn

from ..early_exit_model import early_exit_model

WEIGHT_SCHEDULES = ('linear', 'uniform', 'normalized')
SAMPLING_MODES = ('uniform', 'alpha')
LossWeights = Union[str, Sequence[float], Mapping[int, float]]


def _check_schedule(name: str) -> None:
    """Raise ValueError if ``name`` is not a known weight schedule."""
    if name not in WEIGHT_SCHEDULES:
        raise ValueError(f'loss_weights={name!r}: unknown schedule, expected '
                         f'one of {WEIGHT_SCHEDULES}, a list or a dict')


def exit_weights(loss_weights: LossWeights,
                 exits: Sequence[int]) -> Dict[int, float]:
    """Resolve the loss weight alpha_k of every exit.

    Args:
        loss_weights (str | Sequence[float] | Mapping[int, float]): A named
            schedule: ``'linear'`` (alpha_k = k, the authors' choice),
            ``'uniform'`` (alpha_k = 1) or ``'normalized'`` (alpha_k
            proportional to k with mean 1 over ``exits``, i.e. ``'linear'``
            at the loss scale of ``'uniform'``); or one weight per exit, as
            a sequence aligned with ``exits`` or a mapping exit -> weight.
        exits (Sequence[int]): The trained exits, increasing.

    Returns:
        dict[int, float]: Exit -> alpha_k.

    Raises:
        ValueError: On an unknown schedule name, a weight list or mapping
            that does not match ``exits``, or a weight that is not a finite
            positive number.
    """
    if isinstance(loss_weights, str):
        _check_schedule(loss_weights)
        if loss_weights == 'uniform':
            return {k: 1.0 for k in exits}
        scale = len(exits) / sum(exits) if loss_weights == 'normalized' \
            else 1.0
        return {k: k * scale for k in exits}
    if isinstance(loss_weights, Mapping):
        weights = {int(k): float(v) for k, v in loss_weights.items()}
        if sorted(weights) != list(exits):
            raise ValueError(f'loss_weights={dict(loss_weights)!r}: the keys '
                             f'must be exactly the trained exits {exits}')
    else:
        if len(loss_weights) != len(exits):
            raise ValueError(
                f'loss_weights={list(loss_weights)!r}: expected one weight '
                f'per trained exit {exits}')
        weights = dict(zip(exits, map(float, loss_weights)))
    bad = [w for w in weights.values() if not (math.isfinite(w) and w > 0)]
    if bad:
        raise ValueError(f'loss_weights: weights must be finite and '
                         f'positive, got {bad}')
    return weights


def sample_exits(seed: int,
                 iteration: int,
                 exits: Sequence[int],
                 num: int,
                 probs: Optional[Sequence[float]] = None) -> List[int]:
    """Draw ``num`` distinct exits for one training iteration.

    The draw is a pure function of ``(seed, iteration)``: every distributed
    rank draws the same exits without communication, and a resumed run
    continues the sequence of the interrupted one.

    Args:
        seed (int): Non-negative seed.
        iteration (int): The (0-based) training iteration.
        exits (Sequence[int]): The exits to draw from.
        num (int): How many exits to draw, at most ``len(exits)``.
        probs (Sequence[float], optional): Probability of drawing each exit
            (aligned with ``exits``, summing to 1; for ``num > 1`` the
            probabilities of successive draws without replacement, as
            numpy's ``Generator.choice``). None draws uniformly.

    Returns:
        list[int]: The drawn exits, increasing.
    """
    rng = np.random.default_rng([seed, iteration])
    return sorted(
        int(k) for k in rng.choice(exits, size=num, replace=False, p=probs))


@HOOKS.register_module()
class ExitSamplingHook(Hook):
    """Draw the encoder exit(s) of every training iteration (ECO-M2F step A).

    Before each iteration the hook draws ``exits_per_iter`` distinct exits
    from ``exits`` (deterministically from the seed and the iteration, so
    all DDP ranks agree and ``--resume`` continues the same sequence) and
    configures the early-exit model (``EarlyExitMixin``: ``EcoMask2Former``,
    ``EcoDINO``). ``sampling`` says how alpha_k acts:

    - ``'uniform'``: every exit is equally likely and its loss is weighted
      by alpha_k, as below;
    - ``'alpha'``: exit k is drawn with probability ``alpha_k / sum(alpha)``
      and its loss has weight 1, so alpha weights the exits through how
      often they train: the expected gradient of one-exit iterations is
      that of ``sum_k alpha_k L_k`` (up to a constant), and gradient norm
      clipping cannot cancel it.

    With ``'uniform'`` sampling:

    - ``exits_per_iter=1`` (default, the authors' recipe): the encoder runs
      the drawn exit's k layers and every loss term is multiplied by
      alpha_k (``model.set_exit(k)``, ``model.loss_weight = alpha_k``).
    - ``exits_per_iter=n > 1``: one backbone and encoder pass, the decoder
      at each of the n drawn exits, loss ``sum_k alpha_k * L_k``
      (``model.exit_loss_weights``); ``n = len(exits)`` trains every exit
      every iteration.

    After the iteration the model is reset to all layers and weight 1, so
    validation runs the full model (or ``test_cfg.exit_layer``), and the
    message hub gets ``train/exit`` (the drawn exit, single-exit mode) and
    ``train/loss_exit{k}`` (the unweighted total loss of exit k, shown as a
    running mean by the logger).

    Gradient clipping cancels the weights of the single-exit mode:
    Mask2Former clips the norm of the full gradient to 0.01, and its
    unclipped norm is far above that, so the clipped gradient of
    ``alpha_k * L_k`` is that of ``L_k``: each update is the same as with
    alpha_k = 1, and only the sampling frequencies weight the exits. With
    several exits per iteration the weights act inside one gradient and
    survive clipping (their ratios are kept), and so do alpha-proportional
    draws (``sampling='alpha'``, the ECO-M2F configs' choice, at one exit's
    cost). The hook's defaults stay the authors' recipe (their detectron2
    Mask2Former recipe clips the same way); the hook warns when its weights
    cannot act.

    Under DDP the unused deeper encoder layers need
    ``model_wrapper_cfg=dict(type='MMDistributedDataParallel',
    find_unused_parameters=True)`` (set in the ECO-M2F configs).

    Args:
        loss_weights (str | Sequence[float] | Mapping[int, float]): alpha_k;
            see :func:`exit_weights`. Defaults to ``'linear'`` (alpha_k = k).
        exits (Sequence[int], optional): Exits to train; defaults to the
            model's ``exit_layers``.
        exits_per_iter (int): Exits decoded per iteration. Defaults to 1.
        sampling (str): ``'uniform'`` (draws uniform, losses weighted by
            alpha_k) or ``'alpha'`` (draws proportional to alpha_k, unit
            loss weights). Defaults to ``'uniform'``.
        seed (int, optional): Seed of the draws; defaults to the runner's
            seed on rank 0 (sent to the other ranks once, before training;
            mmengine restores it on resume).
    """

    priority = 'NORMAL'

    def __init__(self,
                 loss_weights: LossWeights = 'linear',
                 exits: Optional[Sequence[int]] = None,
                 exits_per_iter: int = 1,
                 sampling: str = 'uniform',
                 seed: Optional[int] = None) -> None:
        if isinstance(exits_per_iter, bool) or not isinstance(
                exits_per_iter, int) or exits_per_iter < 1:
            raise ValueError(f'exits_per_iter={exits_per_iter!r}: expected '
                             'a positive int')
        if sampling not in SAMPLING_MODES:
            raise ValueError(f'sampling={sampling!r}: expected one of '
                             f'{SAMPLING_MODES}')
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise ValueError(f'seed={seed!r}: expected a non-negative int')
        if isinstance(loss_weights, str):
            _check_schedule(loss_weights)
        self.loss_weights = loss_weights
        self.exits = None if exits is None else list(exits)
        self.exits_per_iter = exits_per_iter
        self.sampling = sampling
        self.seed = seed
        self.weights: Dict[int, float] = {}
        self.probs: Optional[List[float]] = None
        self._drawn: List[int] = []

    @staticmethod
    def _model(runner) -> nn.Module:
        """Return the (unwrapped) early-exit model of the runner."""
        return early_exit_model(
            runner.model, 'ExitSamplingHook',
            ('set_exit', 'exit_layers', 'exit_loss_weights', 'exit_losses'))

    def before_train(self, runner) -> None:
        """Resolve the exits and weights, and check the setup."""
        model = self._model(runner)
        exits = model.check_exits(
            model.exit_layers if self.exits is None else self.exits,
            'ExitSamplingHook.exits')
        if self.exits_per_iter > len(exits):
            raise ValueError(
                f'ExitSamplingHook.exits_per_iter={self.exits_per_iter} '
                f'exceeds the number of trained exits {exits}')
        alphas = exit_weights(self.loss_weights, exits)
        if self.sampling == 'alpha':
            total = sum(alphas.values())
            self.probs = [alphas[k] / total for k in exits]
            self.weights = {k: 1.0 for k in exits}
        else:
            self.probs = None
            self.weights = alphas
        if self.seed is None:
            # rank 0's seed: with `randomness.diff_rank_seed` the runner's
            # seed differs between ranks
            seed = [runner.seed]
            broadcast_object_list(seed)
            self.seed = seed[0]
        draws = 'uniform draws' if self.probs is None else (
            'draw probabilities ' +
            str({k: round(p, 4)
                 for k, p in zip(exits, self.probs)}))
        print_log(
            f'ExitSamplingHook: {self.exits_per_iter} of exits {exits} per '
            f'iteration, {draws}, loss weights {self.weights}, seed '
            f'{self.seed}',
            logger='current')
        if self.exits_per_iter == 1 and len(set(self.weights.values())) > 1 \
                and self._clips_grad_norm(runner):
            print_log(
                'ExitSamplingHook: gradient norm clipping cancels the loss '
                'weights of single-exit iterations (each update equals the '
                "unweighted one); set sampling='alpha' or exits_per_iter > 1 "
                'to make them act',
                logger='current',
                level=logging.WARNING)

    @staticmethod
    def _clips_grad_norm(runner) -> bool:
        """Whether the runner's optimizer wrapper clips the gradient norm."""
        optim_wrapper = getattr(runner, 'optim_wrapper', None)
        clips = bool(getattr(optim_wrapper, 'clip_grad_kwargs', None))
        return clips and optim_wrapper.grad_name == 'grad_norm'

    def draw(self, iteration: int) -> List[int]:
        """Return the exits of a training iteration.

        Args:
            iteration (int): The (0-based) training iteration.

        Returns:
            list[int]: ``exits_per_iter`` exits, increasing.
        """
        return sample_exits(self.seed, iteration, sorted(self.weights),
                            self.exits_per_iter, self.probs)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Draw the iteration's exits and configure the model."""
        model = self._model(runner)
        self._drawn = self.draw(runner.iter)
        if len(self._drawn) == 1:
            model.set_exit(self._drawn[0])
            model.loss_weight = self.weights[self._drawn[0]]
        else:
            model.exit_loss_weights = {k: self.weights[k] for k in self._drawn}

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Log the exit(s) and their losses, and reset the model."""
        model = self._model(runner)
        if len(self._drawn) == 1:
            runner.message_hub.update_scalar('train/exit', self._drawn[0])
        for k, loss in model.exit_losses.items():
            runner.message_hub.update_scalar(f'train/loss_exit{k}', loss)
        model.set_exit(None)
        model.loss_weight = 1.0
        model.exit_loss_weights = None
