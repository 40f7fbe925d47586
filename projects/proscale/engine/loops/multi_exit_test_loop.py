# Copyright (c) The proscale Authors. All rights reserved.
"""Evaluate every encoder exit of an early-exit model in one pass."""
import re
from typing import Dict, List, Optional, Sequence, Union

from mmengine.registry import LOOPS
from torch.utils.data import DataLoader

from ..early_exit_model import early_exit_model
from .multi_evaluator_test_loop import (MultiEvaluatorTestLoop, Predictions,
                                        fixed_exit_policy,
                                        split_policy_metrics)

EXIT_POLICY = re.compile(r'^exit(\d+)$')


def split_exit_metrics(metrics: Dict[str, float]) -> Dict[int, dict]:
    """Group the flat metrics of :class:`MultiExitTestLoop` by exit.

    Args:
        metrics (dict[str, float]): ``{'exit{k}/{metric}': value}``.

    Returns:
        dict[int, dict[str, float]]: Exit -> ``{metric: value}``, exits
        increasing.
    """
    per_exit = {
        int(match[1]): exit_metrics
        for name, exit_metrics in split_policy_metrics(metrics).items()
        if (match := EXIT_POLICY.match(name))
    }
    return dict(sorted(per_exit.items()))


@LOOPS.register_module()
class MultiExitTestLoop(MultiEvaluatorTestLoop):
    """Test loop that evaluates several encoder exits in one pass.

    For every batch the model (an ``EarlyExitMixin`` detector such as
    ``EcoMask2Former`` or ``EcoDINO``) runs the backbone and
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
        model = early_exit_model(runner.model, 'MultiExitTestLoop',
                                 ('predict_exits', ))
        self.exits: List[int] = model.check_exits(
            model.exit_layers if exits is None else exits, 'test_cfg.exits')
        super().__init__(runner, dataloader, evaluator,
                         [fixed_exit_policy(k) for k in self.exits], fp16)

    def predict(self, data: dict) -> Predictions:
        """Predict one preprocessed batch at every exit.

        Args:
            data (dict): The batch after the data preprocessor.

        Returns:
            tuple[dict, dict]: The predictions of every exit, by exit and by
            policy name (``'exit{k}'``).
        """
        outputs = self.model.predict_exits(data['inputs'],
                                           data['data_samples'], self.exits)
        return outputs, {
            fixed_exit_policy(k): exit_outputs
            for k, exit_outputs in outputs.items()
        }

    def summary(self, metrics: Dict[str, float]) -> str:
        """Every exit's metrics, one line per exit."""
        return 'Per-exit results:\n' + '\n'.join(
            f'  exit {k}: ' + ', '.join(f'{name}: {value}'
                                        for name, value in m.items())
            for k, m in split_exit_metrics(metrics).items())
