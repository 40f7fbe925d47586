"""Evaluate fixed exits and exit gates of an early-exit model in one pass."""
import copy
import re
from collections import Counter
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmdet.structures import SampleList
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import LOOPS
from mmengine.runner import TestLoop, autocast
from torch import Tensor
from torch.utils.data import DataLoader

from ...models.gates import ExitGate, load_gate

POLICY_METRIC = re.compile(r'^(.+?)/(.+)$')


def fixed_exit_policy(exit_layer: int) -> str:
    """Name of the policy that runs every image to ``exit_layer``."""
    return f'exit{exit_layer}'


def policy_predictions(outputs: Dict[int, SampleList],
                       exits: Sequence[int]) -> SampleList:
    """Each image's prediction at the exit a policy picked for it.

    Returns copies: several policies pick the same prediction and evaluators
    may modify their inputs in place (mmdet's ``CocoPanopticMetric`` rewrites
    the predicted panoptic map), so sharing them would let one policy's
    evaluation change another's.

    Args:
        outputs (dict[int, list[:obj:`DetDataSample`]]): Predictions of the
            batch at every exit.
        exits (Sequence[int]): The policy's exit for every image.

    Returns:
        list[:obj:`DetDataSample`]: Copies of ``outputs[exits[i]][i]``.
    """
    return [copy.deepcopy(outputs[k][i]) for i, k in enumerate(exits)]


@LOOPS.register_module()
class ExitPolicyTestLoop(TestLoop):
    """Test loop that evaluates several exit policies in one pass.

    A policy decides each image's exit: a fixed exit (``'exit{k}'``) or a
    trained exit gate (named by the caller). For every batch the model (an
    ``EcoMask2Former``) runs the backbone and the encoder once, decodes at
    every exit (``predict_exits_by_feat``) and computes the gate input
    (``pixel_decoder.gate_features``); each policy's evaluator, a copy of
    the test evaluator, receives every image's prediction at the exit that
    policy picks (its own copies), so each policy's metrics are exactly
    those of running it alone, dataset-level PQ included. The hooks see the
    deepest exit's predictions. :meth:`run` returns
    ``'{policy}/{metric}'`` and :attr:`exit_counts` counts the images each
    policy sent to each exit.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The test dataloader (config).
        evaluator (dict | list): The test evaluator config, built once per
            policy.
        gates (dict[str, str], optional): Policy name -> gate file
            (``tools/eco/train_gate.py``). Names must not contain '/'.
        exits (Sequence[int], optional): Fixed exits to evaluate; defaults
            to the model's ``exit_layers``.
        fp16 (bool): Whether to test with automatic mixed precision.
            Defaults to False.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, dict],
                 evaluator: Union[dict, list],
                 gates: Optional[Dict[str, str]] = None,
                 exits: Optional[Sequence[int]] = None,
                 fp16: bool = False) -> None:
        if not isinstance(evaluator, (dict, list)):
            raise TypeError('ExitPolicyTestLoop builds one evaluator per '
                            'policy and needs the evaluator config (dict or '
                            f'list), got {type(evaluator).__name__}')
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not hasattr(model, 'predict_exits_by_feat'):
            raise TypeError(
                'ExitPolicyTestLoop needs an early-exit model such as '
                f"'EcoMask2Former', got '{type(model).__name__}'")
        self.exits: List[int] = model.check_exits(
            model.exit_layers if exits is None else exits, 'test_cfg.exits')
        self.gates: Dict[str, ExitGate] = {}
        for name, path in (gates or {}).items():
            if '/' in name or name in map(fixed_exit_policy, self.exits):
                raise ValueError(f'gate policy name {name!r} must not '
                                 "contain '/' or equal a fixed exit's name")
            self.gates[name] = load_gate(path)[0]
            model.check_exits(self.gates[name].exits, f'exits of {path}')
        self.policies = [fixed_exit_policy(k)
                         for k in self.exits] + list(self.gates)
        self.evaluators: Dict[str, Evaluator] = {
            name: runner.build_evaluator(copy.deepcopy(evaluator))
            for name in self.policies
        }
        super().__init__(runner, dataloader, self.evaluators[self.policies[0]],
                         fp16)
        for policy_evaluator in self.evaluators.values():
            policy_evaluator.dataset_meta = self.evaluator.dataset_meta
        self.exit_counts: Dict[str, Counter] = {
            name: Counter()
            for name in self.policies
        }

    def run(self) -> Dict[str, float]:
        """Run the test set once and evaluate every policy.

        Returns:
            dict[str, float]: ``{'{policy}/{metric}': value}``.
        """
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
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
        print_log(
            'Images per exit of every exit policy:\n' +
            '\n'.join(f'  {name}: exits {dict(sorted(counts.items()))}'
                      for name, counts in self.exit_counts.items()),
            logger='current')
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics

    def _policy_exits(self, gate_input: Tensor) -> Dict[str, List[int]]:
        """Every policy's exit for every image of a batch."""
        num_images = len(gate_input)
        choices = {fixed_exit_policy(k): [k] * num_images for k in self.exits}
        for name, gate in self.gates.items():
            choices[name] = gate.to(
                gate_input.device).predict(gate_input).tolist()
        return choices

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict) -> None:
        """Predict one batch at every exit and feed every policy.

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
            feats = model.extract_feat(data['inputs'])
            choices = self._policy_exits(
                model.panoptic_head.pixel_decoder.gate_features(list(feats)))
            outputs = model.predict_exits_by_feat(
                feats, data['data_samples'],
                {k
                 for exits in choices.values()
                 for k in exits})
        for name, exits in choices.items():
            self.exit_counts[name].update(exits)
            self.evaluators[name].process(
                data_samples=policy_predictions(outputs, exits),
                data_batch=data_batch)
        self.runner.call_hook(
            'after_test_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs[max(outputs)])


def split_policy_metrics(metrics: Dict[str, float]) -> Dict[str, dict]:
    """Group the flat metrics of :class:`ExitPolicyTestLoop` by policy.

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
