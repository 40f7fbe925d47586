# Copyright (c) The proscale Authors. All rights reserved.
import random
from types import SimpleNamespace

import numpy as np
import torch

from proscale.engine.hooks import (RandomStateHook, capture_random_states,
                                   restore_random_states)


def _draw() -> tuple:
    return (random.random(), float(np.random.rand()),
            float(torch.rand(())))


def test_capture_and_restore_every_generator():
    states = capture_random_states()
    first = _draw()
    restore_random_states(states)
    assert _draw() == first


class _Loop:
    """An ``IterBasedTrainLoop`` stand-in: a data iterator that draws a
    random number per batch (as an augmentation does)."""

    def __init__(self) -> None:
        self.dataloader_iterator = iter(lambda: _draw(), None)


def test_states_restored_after_the_skipped_batches():
    """Resumed at iteration 2: the two batches the loop skips draw random
    numbers, then the saved states are back for the first new batch."""
    hook = RandomStateHook()
    loop = _Loop()
    runner = SimpleNamespace(
        train_loop=loop, iter=2, epoch=0, cfg=dict(resume=True))
    checkpoint = dict(meta=dict(iter=2, epoch=0))
    hook.after_train_iter(runner, batch_idx=1)
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['random_states']['data'] == dict(
        iter=2, epoch=0, seed=None)
    expected = _draw()  # the uninterrupted run's next batch

    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    for _ in range(2):
        next(loop.dataloader_iterator)  # mmengine's skip
    assert next(loop.dataloader_iterator) == expected


def test_validation_does_not_shift_the_training_states():
    hook = RandomStateHook()
    runner = SimpleNamespace()
    states = capture_random_states()
    expected = _draw()
    restore_random_states(states)
    hook.before_val(runner)
    _draw()  # validation draws
    hook.after_val(runner)
    assert _draw() == expected


def test_load_from_leaves_the_states_alone():
    """A checkpoint loaded to fine-tune (``load_from``) is no resume."""
    hook = RandomStateHook()
    loop = _Loop()
    iterator = loop.dataloader_iterator
    runner = SimpleNamespace(
        train_loop=loop, iter=0, epoch=0, cfg=dict(resume=False))
    checkpoint = dict(meta=dict(iter=5, epoch=0))
    hook.before_save_checkpoint(runner, checkpoint)
    saved_next = _draw()
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert loop.dataloader_iterator is iterator
    assert _draw() != saved_next
