"""Evaluate every encoder exit of an early-exit model in one pass."""
import copy
import re
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import LOOPS
from mmengine.runner import TestLoop, autocast
from torch.utils.data import DataLoader

EXIT_METRIC = re.compile(r'^exit(\d+)/(.+)$')


def split_exit_metrics(metrics: Dict[str, float]) -> Dict[int, dict]:
    """Group the flat metrics of :class:`MultiExitTestLoop` by exit.

    Args:
        metrics (dict[str, float]): ``{'exit{k}/{metric}': value}``.

    Returns:
        dict[int, dict[str, float]]: Exit -> ``{metric: value}``, exits
        increasing.
    """
    per_exit: Dict[int, dict] = {}
    for key, value in metrics.items():
        match = EXIT_METRIC.match(key)
        if match:
            per_exit.setdefault(int(match[1]), {})[match[2]] = value
    return dict(sorted(per_exit.items()))


@LOOPS.register_module()
class MultiExitTestLoop(TestLoop):
    """Test loop that evaluates several encoder exits in one pass.

    For every batch the model (an ``EcoMask2Former``) runs the backbone and
    the encoder once and decodes at every exit (``predict_exits``); each
    exit's predictions go to its own copy of the test evaluator. The hooks
    (``after_test_iter``: visualisation, result dumping) see the deepest
    exit's predictions. :meth:`run` returns the metrics of exit k under
    ``'exit{k}/{metric}'`` (see :func:`split_exit_metrics`).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The test dataloader (config).
        evaluator (dict | list): The test evaluator config, built once per
            exit.
        exits (Sequence[int], optional): Exits to evaluate; defaults to the
            model's ``exit_layers``.
        fp16 (bool): Whether to test with automatic mixed precision.
            Defaults to False.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, dict],
                 evaluator: Union[dict, list],
                 exits: Optional[Sequence[int]] = None,
                 fp16: bool = False) -> None:
        if not isinstance(evaluator, (dict, list)):
            raise TypeError('MultiExitTestLoop builds one evaluator per exit '
                            'and needs the evaluator config (dict or list), '
                            f'got {type(evaluator).__name__}')
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not hasattr(model, 'predict_exits'):
            raise TypeError(
                'MultiExitTestLoop needs an early-exit model such as '
                f"'EcoMask2Former', got '{type(model).__name__}'")
        self.exits: List[int] = model.check_exits(
            model.exit_layers if exits is None else exits, 'test_cfg.exits')
        self.evaluators: Dict[int, Evaluator] = {
            k: runner.build_evaluator(copy.deepcopy(evaluator))
            for k in self.exits
        }
        super().__init__(runner, dataloader, self.evaluators[self.exits[0]],
                         fp16)
        for exit_evaluator in self.evaluators.values():
            exit_evaluator.dataset_meta = self.evaluator.dataset_meta

    def run(self) -> Dict[str, float]:
        """Run the test set once and evaluate every exit.

        Returns:
            dict[str, float]: ``{'exit{k}/{metric}': value}``.
        """
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)

        metrics = {}
        for k, exit_evaluator in self.evaluators.items():
            exit_metrics = exit_evaluator.evaluate(
                len(self.dataloader.dataset))
            metrics.update({
                f'exit{k}/{name}': value
                for name, value in exit_metrics.items()
            })
        print_log(
            'Per-exit results:\n' +
            '\n'.join(f'  exit {k}: ' + ', '.join(f'{name}: {value}'
                                                  for name, value in m.items())
                      for k, m in split_exit_metrics(metrics).items()),
            logger='current')
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict) -> None:
        """Predict one batch at every exit and feed the evaluators.

        Args:
            idx (int): The batch index.
            data_batch (dict): A batch from the dataloader.
        """
        self.runner.call_hook(
            'before_test_iter', batch_idx=idx, data_batch=data_batch)
        model = self.runner.model.module if is_model_wrapper(
            self.runner.model) else self.runner.model
        with autocast(enabled=self.fp16):
            data = model.data_preprocessor(data_batch, False)
            outputs = model.predict_exits(data['inputs'], data['data_samples'],
                                          self.exits)
        for k, exit_outputs in outputs.items():
            self.evaluators[k].process(
                data_samples=exit_outputs, data_batch=data_batch)
        self.runner.call_hook(
            'after_test_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs[self.exits[-1]])
