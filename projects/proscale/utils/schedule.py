# Copyright (c) The proscale Authors. All rights reserved.
"""Stretch or shrink a config's iteration-based schedule to another length.

A config's schedule is written for its ``train_cfg.max_iters``: the warm-up
length, the decay milestones, the validation and checkpoint intervals.
Changing only ``max_iters`` (``--cfg-options train_cfg.max_iters=N``) keeps
the others, so a shortened run stops in the middle of its schedule (e.g.
before the cosine decay ends). :func:`scale_schedule` rescales all of them
by ``N / max_iters`` so that the run goes through the whole schedule, as
``tools/train.py --max-iters N`` does.
"""
from typing import Any, Dict, List, Tuple

from mmengine.config import Config
from mmengine.logging import print_log

# Iteration-valued keys of mmengine's parameter schedulers.
_POINT_KEYS = ('begin', 'end')
_LENGTH_KEYS = ('step_size', 'total_steps')
_LOOP_TYPES = ('IterBasedTrainLoop', 'mmengine.IterBasedTrainLoop')


class ScheduleScaler:
    """Map iteration counts of a schedule of ``old`` iterations onto one of
    ``new`` iterations.

    Args:
        old (int): The schedule's ``max_iters``.
        new (int): The wanted ``max_iters``.
    """

    def __init__(self, old: int, new: int) -> None:
        self.old = old
        self.new = new

    def point(self, iteration: int) -> int:
        """Scale a position in the schedule (a ``begin``, ``end`` or
        milestone).

        0 stays 0, ``old`` becomes ``new``, every other position lands
        strictly inside (rounded), and equal positions stay equal, so that
        one scheduler's ``end`` stays the next one's ``begin``. A position
        of 2 or more stays at 2 or more where ``new`` allows it: mmengine's
        ``LinearLR`` over a single iteration never leaves its start factor,
        so a warm-up shrunk to one iteration would keep a short run at the
        warm-up's lr. Positions past ``old`` (mmengine's "until the end",
        e.g. ``INF``) are kept.

        Args:
            iteration (int): The position, in iterations.

        Returns:
            int: The scaled position.
        """
        if iteration <= 0 or iteration > self.old:
            return iteration
        if iteration == self.old:
            return self.new
        scaled = max(round(iteration * self.new / self.old),
                     min(iteration, 2))
        return min(scaled, max(self.new - 1, 1))

    def length(self, iterations: int) -> int:
        """Scale a length or interval (at least 1 iteration).

        Args:
            iterations (int): The length, in iterations.

        Returns:
            int: The scaled length.
        """
        return max(1, round(iterations * self.new / self.old))


def _scale_scheduler(scheduler: Dict[str, Any], scaler: ScheduleScaler,
                     index: int) -> None:
    """Scale one ``param_scheduler`` entry in place."""
    if scheduler.get('by_epoch', True):
        raise ValueError(
            f'--max-iters: param_scheduler.{index} ({scheduler.get("type")}) '
            'is epoch-based (by_epoch=True); only iteration-based schedules '
            'can be rescaled')
    old_span = None
    if 'begin' in scheduler and 'end' in scheduler:
        old_span = scheduler['end'] - scheduler['begin']
    for key in _POINT_KEYS:
        if key in scheduler:
            scheduler[key] = scaler.point(scheduler[key])
    if 'begin' in scheduler and 'end' in scheduler:
        scheduler['end'] = max(scheduler['end'], scheduler['begin'] + 1)
    if 'milestones' in scheduler:
        scheduler['milestones'] = [
            scaler.point(m) for m in scheduler['milestones']
        ]
    for key in _LENGTH_KEYS:
        if key in scheduler:
            scheduler[key] = scaler.length(scheduler[key])
    if 'T_max' in scheduler:
        # A cosine spanning its scheduler's range keeps spanning it.
        scheduler['T_max'] = (
            scheduler['end'] - scheduler['begin']
            if scheduler['T_max'] == old_span else scaler.length(
                scheduler['T_max']))


def _scale_dynamic_intervals(intervals: List[Tuple[int, int]],
                             scaler: ScheduleScaler) -> List[Tuple[int, int]]:
    """Scale mmengine's ``train_cfg.dynamic_intervals`` (milestone,
    interval) pairs."""
    return [(scaler.point(milestone), scaler.length(interval))
            for milestone, interval in intervals]


def scale_schedule(cfg: Config, max_iters: int) -> ScheduleScaler:
    """Rescale a config's training schedule to ``max_iters`` iterations.

    Scales, by ``max_iters / train_cfg.max_iters``: every
    ``param_scheduler``'s ``begin``, ``end``, ``milestones``, ``T_max``,
    ``step_size`` and ``total_steps`` (so warm-up and decay keep their share
    of the run and the run ends where the schedule ends),
    ``train_cfg.val_interval`` and ``dynamic_intervals``, and the checkpoint
    hook's ``interval``. Logging intervals are left alone.

    Args:
        cfg (Config): A config with an iteration-based training loop
            (``train_cfg.type='IterBasedTrainLoop'``) and iteration-based
            schedulers (``by_epoch=False``), updated in place.
        max_iters (int): The new number of training iterations (>= 1).

    Returns:
        ScheduleScaler: The mapping that was applied.

    Raises:
        ValueError: Naming the config key that cannot be rescaled.
    """
    if max_iters < 1:
        raise ValueError(f'--max-iters must be >= 1, got {max_iters}')
    train_cfg = cfg.get('train_cfg') or {}
    if train_cfg.get('type') not in _LOOP_TYPES or 'max_iters' not in \
            train_cfg:
        raise ValueError(
            '--max-iters: needs an iteration-based training loop '
            "(train_cfg.type='IterBasedTrainLoop' with max_iters), got "
            f"train_cfg.type={train_cfg.get('type')!r}")
    scaler = ScheduleScaler(train_cfg['max_iters'], max_iters)
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for index, scheduler in enumerate(schedulers):
        _scale_scheduler(scheduler, scaler, index)
    train_cfg['max_iters'] = max_iters
    if 'val_interval' in train_cfg:
        train_cfg['val_interval'] = scaler.length(train_cfg['val_interval'])
    if train_cfg.get('dynamic_intervals'):
        train_cfg['dynamic_intervals'] = _scale_dynamic_intervals(
            train_cfg['dynamic_intervals'], scaler)
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint and 'interval' in checkpoint:
        checkpoint['interval'] = scaler.length(checkpoint['interval'])
    print_log(
        f'schedule rescaled from {scaler.old} to {max_iters} iterations '
        f'(x{max_iters / scaler.old:.3g}): param_scheduler '
        f'{[dict(s) for s in schedulers]}, val_interval '
        f"{train_cfg.get('val_interval')}, checkpoint interval "
        f"{checkpoint.get('interval') if checkpoint else None}",
        logger='current')
    return scaler
