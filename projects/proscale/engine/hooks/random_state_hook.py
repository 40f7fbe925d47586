# Copyright (c) The proscale Authors. All rights reserved.
"""Exact resume: random states and data position in the checkpoints.

mmengine's runner seeds every process once, at the start of a run. A run
resumed from a checkpoint is seeded again from that same seed, and
``IterBasedTrainLoop`` then loads (and throws away) the batches that were
already trained on. The data order is right, but the random generators are
not where the interrupted run left them: augmentations, dropout and
Mask2Former's point sampling draw other numbers from the first resumed
iteration on, and the losses drift apart.

:class:`RandomStateHook` stores, in every checkpoint, the Python, NumPy and
torch (CPU and every CUDA device) random states of every rank, and the data
position (the sampler's seed and the iteration and epoch the run resumes
at, i.e. the batches already drawn from the sampler). On resume it restores
them right after the loop has skipped the trained batches, i.e. before the
first new batch is loaded, so the resumed run continues exactly as the
uninterrupted one.
"""
import logging
import random
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

CHECKPOINT_KEY = 'random_states'


def capture_random_states() -> Dict[str, Any]:
    """Return this process's Python, NumPy and torch random states.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` and ``cuda`` (a list with one
        state per CUDA device; empty without CUDA).
    """
    return dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() else [])


def restore_random_states(states: Dict[str, Any]) -> None:
    """Set this process's random states (from :func:`capture_random_states`).

    Args:
        states (dict): The states to restore. CUDA states are restored when
            CUDA is available with as many devices as they were saved from.
    """
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    cuda = states.get('cuda') or []
    if cuda and torch.cuda.is_available() and (len(cuda)
                                               == torch.cuda.device_count()):
        torch.cuda.set_rng_state_all(cuda)


def _sampler(loop: Any) -> Optional[Any]:
    """The training dataloader's sampler, if the loop has a dataloader."""
    dataloader = getattr(loop, 'dataloader', None)
    return getattr(dataloader, 'sampler', None)


class _RestoreAfterSkip:
    """Wraps a loop's dataloader iterator: restores the random states once
    ``skip`` batches (those the loop discards on resume) were drawn.

    Args:
        iterator (Iterator): The loop's ``dataloader_iterator``.
        skip (int): Batches the loop skips before training.
        states (dict): Random states to restore then.
    """

    def __init__(self, iterator: Iterator, skip: int,
                 states: Dict[str, Any]) -> None:
        self.iterator = iterator
        self.remaining = skip
        self.states: Optional[Dict[str, Any]] = states

    def __iter__(self) -> '_RestoreAfterSkip':
        return self

    def __next__(self) -> Any:
        batch = next(self.iterator)
        self.remaining -= 1
        if self.remaining == 0 and self.states is not None:
            restore_random_states(self.states)
            self.states = None
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save and restore random states and data position for exact resume.

    Checkpoints get a ``random_states`` entry: ``ranks`` (one
    :func:`capture_random_states` dict per rank) and ``data`` (``iter``,
    ``epoch`` and the sampler's ``seed``). A run resumed from such a
    checkpoint (``--resume``) restores them; a checkpoint loaded with
    ``load_from`` (fine-tuning) leaves them alone. ``tools/train.py`` adds
    this hook; add ``dict(type='RandomStateHook')`` to ``custom_hooks`` for
    other tools.

    With ``IterBasedTrainLoop`` the states are restored after the loop has
    skipped the already trained batches, just before the first new batch is
    loaded; with other loops, before training starts. Validation runs with
    the training's random states set aside and put back afterwards, so
    whether a validation ran does not change the training's numbers.
    """

    # First: the states are taken before any other hook draws in
    # ``before_val`` or ``after_train_iter``.
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._resumed: Optional[Dict[str, Any]] = None
        self._training_states: Optional[Dict[str, Any]] = None
        self._latest: Optional[List[Dict[str, Any]]] = None

    def before_val(self, runner) -> None:
        """Keep the training's random states while validation runs."""
        self._training_states = capture_random_states()

    def after_val(self, runner) -> None:
        """Give the training its random states back: validation (e.g. the
        seed its dataloader draws) does not shift the training's numbers,
        so a resumed run that skips a validation stays exact."""
        if self._training_states is not None:
            restore_random_states(self._training_states)
            self._training_states = None

    def _snapshot(self) -> None:
        """Keep every rank's current states for the next checkpoint.

        Checkpoints are saved by rank 0 only (``Runner.save_checkpoint`` is
        ``master_only``), so with several processes the states are gathered
        here, on every rank, after every training iteration (a few kB per
        rank).
        """
        states = capture_random_states()
        self._latest = all_gather_object(
            states) if get_world_size() > 1 else [states]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Snapshot the states a checkpoint saved now must hold."""
        self._snapshot()

    def after_train_epoch(self, runner) -> None:
        """Snapshot the states a checkpoint saved now must hold."""
        self._snapshot()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add every rank's random states (as at the end of the last
        training iteration, also for a checkpoint saved during validation)
        and the data position."""
        sampler = _sampler(runner.train_loop)
        meta = checkpoint.get('meta', {})
        checkpoint[CHECKPOINT_KEY] = dict(
            ranks=self._latest or [capture_random_states()],
            data=dict(
                iter=meta.get('iter', runner.iter),
                epoch=meta.get('epoch', runner.epoch),
                seed=getattr(sampler, 'seed', None)))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved states of a resumed run, and its sampler seed."""
        saved = checkpoint.get(CHECKPOINT_KEY)
        if not runner.cfg.get('resume', False):
            return
        if saved is None:
            print_log(
                'the resumed checkpoint holds no random states (saved '
                'without RandomStateHook): the run continues from the '
                'right iteration but with other random numbers',
                logger='current',
                level=logging.WARNING)
            return
        ranks: List[dict] = saved['ranks']
        if len(ranks) != get_world_size():
            print_log(
                f'the resumed checkpoint holds the random states of '
                f'{len(ranks)} processes, this run has {get_world_size()}: '
                'they are not restored',
                logger='current',
                level=logging.WARNING)
            return
        sampler = _sampler(runner.train_loop)
        seed = saved['data']['seed']
        if seed is not None and getattr(sampler, 'seed', seed) != seed:
            # The sampler was seeded before the checkpoint was read.
            sampler.seed = seed
            self._reset_data_iterator(runner.train_loop)
        self._resumed = ranks[get_rank()]

    @staticmethod
    def _reset_data_iterator(loop: Any) -> None:
        """Restart an iteration-based loop's data iterator (a new seed)."""
        if hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = type(loop.dataloader_iterator)(
                loop.dataloader)

    def before_train(self, runner) -> None:
        """Restore the states now, or once the trained batches are skipped."""
        if self._resumed is None:
            return
        states, self._resumed = self._resumed, None
        loop = runner.train_loop
        if runner.iter > 0 and hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop.dataloader_iterator, runner.iter, states)
        else:
            restore_random_states(states)


def add_random_state_hook(cfg: Any) -> None:
    """Append :class:`RandomStateHook` to a config's ``custom_hooks``.

    Args:
        cfg (Config): The config, updated in place; unchanged if it already
            has the hook.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') in ('RandomStateHook', RandomStateHook)
               for hook in hooks):
        cfg.custom_hooks = [*hooks, dict(type='RandomStateHook')]
