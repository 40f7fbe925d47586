# Copyright (c) The proscale Authors. All rights reserved.
"""Base of the test loops that evaluate several exits or exit policies of an
early-exit model in one pass over the test set."""
import copy
import re
from abc import abstractmethod
from typing import Dict, Sequence, Tuple, Union

import torch
from mmdet.structures import SampleList
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.runner import TestLoop, autocast
from torch import nn
from torch.utils.data import DataLoader

from ...utils import unwrap_model

POLICY_METRIC = re.compile(r'^(.+?)/(.+)$')
# What a loop's ``predict`` returns for a batch: the predictions at every
# exit that ran, and every policy's predictions for its evaluator.
Predictions = Tuple[Dict[int, SampleList], Dict[str, SampleList]]


def fixed_exit_policy(exit_layer: int) -> str:
    """Name of the policy that runs every image to ``exit_layer``."""
    return f'exit{exit_layer}'


def split_policy_metrics(metrics: Dict[str, float]) -> Dict[str, dict]:
    """Group the flat metrics of a :class:`MultiEvaluatorTestLoop` by
    policy (or exit).

    Args:
        metrics (dict[str, float]): ``{'{policy}/{metric}': value}``.

    Returns:
        dict[str, dict[str, float]]: Policy -> ``{metric: value}``.
    """
    per_policy: Dict[str, dict] = {}
    for key, value in metrics.items():
        match = POLICY_METRIC.match(key)
        if match:
            per_policy.setdefault(match[1], {})[match[2]] = value
    return per_policy


class MultiEvaluatorTestLoop(TestLoop):
    """Test loop that feeds one copy of the test evaluator per policy.

    A policy names predictions of the model made in the same pass over the
    test set: a fixed exit (``'exit{k}'``, :func:`fixed_exit_policy`) or an
    exit gate. Subclasses make the predictions of a batch
    (:meth:`predict`) and describe the results (:meth:`summary`); this
    class runs the hooks, feeds every policy's evaluator and returns the
    metrics of policy ``p`` under ``'{p}/{metric}'``
    (:func:`split_policy_metrics`). The hooks (``after_test_iter``:
    visualisation, result dumping) see the deepest exit's predictions.
    :attr:`stage` names the hooks called (``'test'``: ``before_test``,
    ``after_test_iter``, ...); a validation subclass sets it to ``'val'``.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The test dataloader (config).
        evaluator (dict | list): The test evaluator config, built once per
            policy.
        policies (Sequence[str]): The policies' names.
        fp16 (bool): Whether to test with automatic mixed precision.
            Defaults to False.
    """

    stage = 'test'

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, dict],
                 evaluator: Union[dict, list],
                 policies: Sequence[str],
                 fp16: bool = False) -> None:
        if not isinstance(evaluator, (dict, list)):
            raise TypeError(f'{type(self).__name__} builds one evaluator per '
                            'policy and needs the evaluator config (dict or '
                            f'list), got {type(evaluator).__name__}')
        self.evaluators: Dict[str, Evaluator] = {
            name: runner.build_evaluator(copy.deepcopy(evaluator))
            for name in policies
        }
        super().__init__(runner, dataloader, self.evaluators[policies[0]],
                         fp16)
        for policy_evaluator in self.evaluators.values():
            policy_evaluator.dataset_meta = self.evaluator.dataset_meta

    @property
    def model(self) -> nn.Module:
        """nn.Module: The runner's model, unwrapped."""
        return unwrap_model(self.runner.model)

    @abstractmethod
    def predict(self, data: dict) -> Predictions:
        """Predict one preprocessed batch.

        Args:
            data (dict): The batch after the data preprocessor (``inputs``,
                ``data_samples``).

        Returns:
            tuple[dict, dict]: The predictions at every exit that ran
            (exit -> data samples) and every policy's predictions for its
            evaluator (name -> data samples).
        """

    @abstractmethod
    def summary(self, metrics: Dict[str, float]) -> str:
        """Text logged once every policy is evaluated.

        Args:
            metrics (dict[str, float]): ``{'{policy}/{metric}': value}``.

        Returns:
            str: The text.
        """

    def extra_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """Metrics added to the policies' before the epoch hooks see them
        (none here).

        Args:
            metrics (dict[str, float]): ``{'{policy}/{metric}': value}``.

        Returns:
            dict[str, float]: The metrics to add.
        """
        return {}

    def run(self) -> Dict[str, float]:
        """Run the test set once and evaluate every policy.

        Returns:
            dict[str, float]: ``{'{policy}/{metric}': value}``.
        """
        self.runner.call_hook(f'before_{self.stage}')
        self.runner.call_hook(f'before_{self.stage}_epoch')
        self.runner.model.eval()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        metrics = {}
        for name, policy_evaluator in self.evaluators.items():
            policy_metrics = policy_evaluator.evaluate(
                len(self.dataloader.dataset))
            metrics.update({
                f'{name}/{key}': value
                for key, value in policy_metrics.items()
            })
        print_log(self.summary(metrics), logger='current')
        metrics.update(self.extra_metrics(metrics))
        self.runner.call_hook(f'after_{self.stage}_epoch', metrics=metrics)
        self.runner.call_hook(f'after_{self.stage}')
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict) -> None:
        """Predict one batch and feed every policy's evaluator.

        Args:
            idx (int): The batch index.
            data_batch (dict): A batch from the dataloader.
        """
        self.runner.call_hook(
            f'before_{self.stage}_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            outputs, predictions = self.predict(
                self.model.data_preprocessor(data_batch, False))
        for name, data_samples in predictions.items():
            self.evaluators[name].process(
                data_samples=data_samples, data_batch=data_batch)
        self.runner.call_hook(
            f'after_{self.stage}_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs[max(outputs)])
