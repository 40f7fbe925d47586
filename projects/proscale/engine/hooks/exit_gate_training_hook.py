# Copyright (c) The proscale Authors. All rights reserved.
"""Gate training's set-up and output (ECO-M2F step C)."""
import os.path as osp
from contextlib import ExitStack
from typing import Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...models.gates import ExitGateModel, gate_meta, save_gate
from ...utils import torch_threads, unwrap_model


def gate_model(runner) -> ExitGateModel:
    """The runner's :class:`ExitGateModel`, unwrapped."""
    model = unwrap_model(runner.model)
    if not isinstance(model, ExitGateModel):
        raise TypeError('ExitGateTrainingHook needs an ExitGateModel, got '
                        f'{type(model).__name__}')
    return model


@HOOKS.register_module()
class ExitGateTrainingHook(Hook):
    """Standardise the gate inputs, train on one thread, save ``GATE.pth``.

    Before training it checks that the model's gate fits the training data
    (exits, input width and gate input) and sets the data preprocessor's
    statistics to the training images' per-channel mean and standard
    deviation (the same on a resumed run). After training it writes the
    gate with the standardisation folded in (it runs on raw features) as a
    gate file for ``tools/eco/merge_gate.py``, with the meta of
    ``tools/eco/train_gate.py``'s files.

    Args:
        out_file (str, optional): The gate file, relative to the work dir;
            None writes none. Defaults to 'gate.pth'.
        num_threads (int, optional): torch threads while training; the
            gate's operations are far too small to gain from more. None
            leaves them alone. Defaults to 1.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 out_file: Optional[str] = 'gate.pth',
                 num_threads: Optional[int] = 1) -> None:
        self.out_file = out_file
        self.num_threads = num_threads
        self._stack = ExitStack()

    def before_train(self, runner) -> None:
        """Check the gate against the data and set the statistics."""
        model = gate_model(runner)
        dataset = runner.train_dataloader.dataset
        meta = dataset.metainfo
        gate = model.gate
        found = (tuple(meta['exits']), meta['in_channels'],
                 meta['input_levels'], meta['input_depth'])
        expected = (gate.exits, gate.in_channels, gate.input_levels,
                    gate.input_depth)
        if found != expected:
            raise ValueError(
                'model.gate (exits, in_channels, input_levels, input_depth) '
                f'= {expected} does not fit the training data {found}; set '
                'the gate input in both model.gate and the datasets')
        model.data_preprocessor.set_statistics(*dataset.input_statistics())
        if self.num_threads is not None:
            self._stack.enter_context(torch_threads(self.num_threads))

    def after_train(self, runner) -> None:
        """Restore the threads and save the gate file."""
        self._stack.close()
        if self.out_file is None:
            return
        model = gate_model(runner)
        gate = model.trained_gate()
        meta = runner.train_dataloader.dataset.metainfo
        path = osp.join(runner.work_dir, self.out_file)
        save_gate(
            gate,
            gate_meta(
                gate,
                model.beta,
                model.loss_name,
                temperature=model.temperature,
                metric=meta['metric'],
                group=meta['group'],
                derived=meta['derived'],
                iters=runner.iter), path)
        print_log(f'gate saved to {path}', logger='current')
