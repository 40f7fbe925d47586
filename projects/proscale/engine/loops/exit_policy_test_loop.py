# Copyright (c) The proscale Authors. All rights reserved.
"""Evaluate fixed exits and exit gates of an early-exit model in one pass."""
import copy
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmdet.structures import SampleList
from mmengine.registry import LOOPS
from torch import Tensor
from torch.utils.data import DataLoader

from ...evaluation import ExitQualityEvaluator, build_exit_quality
from ...models.gates import (ExitGate, exit_utility, hard_exit_targets,
                             load_gate)
from ..early_exit_model import early_exit_model
from .multi_evaluator_test_loop import (MultiEvaluatorTestLoop, Predictions,
                                        fixed_exit_policy)


# Name of the per-image oracle policy.
ORACLE = 'oracle'


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
class ExitPolicyTestLoop(MultiEvaluatorTestLoop):
    """Test loop that evaluates several exit policies in one pass.

    A policy decides each image's exit: a fixed exit (``'exit{k}'``) or a
    trained exit gate (named by the caller). For every batch the model (an
    ``EcoMask2Former`` or ``EcoDINO``) runs the backbone and the encoder
    once, decodes at every exit (``predict_exits_by_feat``) and computes the
    gate inputs (``gate_inputs_and_reuse``), per group of images of equal
    size alone
    (``own_size_groups``, as gated inference does); each policy's evaluator,
    a copy of the test evaluator, receives every image's prediction at the
    exit that policy picks (its own copies), so each policy's metrics are
    exactly those of running it alone, dataset-level PQ (or box AP)
    included. The hooks
    see the deepest exit's predictions. :meth:`run` returns
    ``'{policy}/{metric}'``, :attr:`exit_counts` counts the images each
    policy sent to each exit and :attr:`image_exits` lists, per policy and
    in test order, every image's input size alone and its exit (for
    per-image GFLOPs).

    With ``oracle=True`` the loop also evaluates the per-image oracle, the
    policy ``'oracle'``: every image at the exit with the highest per-image
    quality (the model's ``exit_quality_task``: PQ, or box AP, of the image
    alone against its ground truth, scored as in the derived dataset of
    step B; ties to the shallowest), minus ``oracle_beta`` per layer. It
    bounds what any gate choosing among these exits can reach.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The test dataloader (config).
        evaluator (dict | list): The test evaluator config, built once per
            policy.
        gates (dict[str, str], optional): Policy name -> gate file
            (``tools/eco/train_gate.py``). Names must not contain '/'.
        exits (Sequence[int], optional): Fixed exits to evaluate; defaults
            to the model's ``exit_layers``.
        oracle (bool): Also evaluate the per-image oracle over ``exits``.
            Needs a test set with an ``ann_file`` (and, for panoptic
            quality, every image's ``seg_map_path``). Defaults to False.
        oracle_beta (float): The oracle's cost per encoder layer in
            quality fraction units (utility ``q_k - beta * k``). Defaults
            to 0.
        fp16 (bool): Whether to test with automatic mixed precision.
            Defaults to False.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, dict],
                 evaluator: Union[dict, list],
                 gates: Optional[Dict[str, str]] = None,
                 exits: Optional[Sequence[int]] = None,
                 oracle: bool = False,
                 oracle_beta: float = 0.0,
                 fp16: bool = False) -> None:
        model = early_exit_model(
            runner.model, 'ExitPolicyTestLoop',
            ('predict_exits_by_feat', 'gate_inputs_and_reuse',
             'own_size_groups', 'exit_quality_task'))
        self.exits: List[int] = model.check_exits(
            model.exit_layers if exits is None else exits, 'test_cfg.exits')
        self.gates: Dict[str, ExitGate] = {}
        for name, path in (gates or {}).items():
            if '/' in name or name == ORACLE or name in map(
                    fixed_exit_policy, self.exits):
                raise ValueError(
                    f'gate policy name {name!r} must not contain '
                    f"'/' or equal a fixed exit's name or {ORACLE!r}")
            self.gates[name] = load_gate(path)[0]
            model.check_exits(self.gates[name].exits, f'exits of {path}')
        self.policies = [fixed_exit_policy(k)
                         for k in self.exits] + list(self.gates)
        if oracle:
            self.policies.append(ORACLE)
        self.oracle_beta = oracle_beta
        # the widest gate input; each gate reads its first in_channels
        self.gate_input_levels = max(
            [gate.input_levels for gate in self.gates.values()], default=1)
        # the encoder depths some gate reads its input after
        self.gate_input_depths = sorted(
            {gate.input_depth
             for gate in self.gates.values()} | {0})
        # every batch is decoded at every exit some policy can pick
        self.decoded_exits = sorted(
            set(self.exits).union(*(gate.exits
                                    for gate in self.gates.values())))
        super().__init__(runner, dataloader, evaluator, self.policies, fp16)
        self.quality_evaluator: Optional[ExitQualityEvaluator] = None
        if oracle:
            try:
                self.quality_evaluator = build_exit_quality(
                    model.exit_quality_task, self.dataloader.dataset)
            except ValueError as error:
                raise ValueError(
                    f'ExitPolicyTestLoop(oracle=True): {error}') from error
        self.exit_counts: Dict[str, Counter] = {
            name: Counter()
            for name in self.policies
        }
        self.image_exits: Dict[str, List[Tuple[Tuple[int, int], int]]] = {
            name: []
            for name in self.policies
        }

    def _oracle_exits(self, outputs: Dict[int, SampleList]) -> List[int]:
        """Each image's exit of highest utility by its own quality (the
        first metric and group: All-PQ, or box AP)."""
        quality = []
        for i, sample in enumerate(outputs[self.exits[0]]):
            tables = self.quality_evaluator.evaluate(
                int(sample.img_id), [outputs[k][i] for k in self.exits])
            quality.append(tables[:, 0, 0])
        # NaN: nothing to get wrong (no segment in the ground truth or the
        # prediction; no box in the ground truth), as in the gate's
        # training data
        quality = torch.from_numpy(np.stack(quality)).double().nan_to_num(1.0)
        best = hard_exit_targets(
            exit_utility(quality, self.exits, self.oracle_beta))
        return [self.exits[j] for j in best.tolist()]

    def _policy_exits(self,
                      gate_inputs: Dict[int, Tensor]) -> Dict[str, List[int]]:
        """Every policy's exit for every image of a batch, each gate given
        the gate input of its ``input_depth`` (a key of ``gate_inputs``)."""
        num_images = len(gate_inputs[0])
        choices = {fixed_exit_policy(k): [k] * num_images for k in self.exits}
        for name, gate in self.gates.items():
            gate_input = gate_inputs[gate.input_depth]
            choices[name] = gate.to(gate_input.device).predict(
                gate_input[:, :gate.in_channels]).tolist()
        return choices

    def predict(self, data: dict) -> Predictions:
        """Predict one preprocessed batch at every exit some policy picks,
        and count every policy's exits.

        Args:
            data (dict): The batch after the data preprocessor.

        Returns:
            tuple[dict, dict]: The predictions at every exit that ran, and
            every policy's predictions (:func:`policy_predictions`).
        """
        model = self.model
        samples = data['data_samples']
        outputs = {k: [None] * len(samples) for k in self.decoded_exits}
        choices = {name: [0] * len(samples) for name in self.policies}
        for inputs, index in model.own_size_groups(data['inputs'], samples):
            index = index.tolist()
            group_samples = [samples[i] for i in index]
            feats = model.extract_feat(inputs)
            gate_inputs, reuse = model.gate_inputs_and_reuse(
                feats, group_samples, self.gate_input_levels,
                self.gate_input_depths)
            group_choices = self._policy_exits(gate_inputs)
            group_outputs = model.predict_exits_by_feat(
                feats, group_samples, self.decoded_exits, **reuse)
            if self.quality_evaluator is not None:
                group_choices[ORACLE] = self._oracle_exits(group_outputs)
            for j, i in enumerate(index):
                for k, predictions in group_outputs.items():
                    outputs[k][i] = predictions[j]
                for name, exits in group_choices.items():
                    choices[name][i] = exits[j]
        sizes = [tuple(sample.batch_input_shape) for sample in samples]
        for name, exits in choices.items():
            self.exit_counts[name].update(exits)
            self.image_exits[name] += list(zip(sizes, exits))
        return outputs, {
            name: policy_predictions(outputs, exits)
            for name, exits in choices.items()
        }

    def summary(self, metrics: Dict[str, float]) -> str:
        """How many images every policy sent to each exit."""
        return 'Images per exit of every exit policy:\n' + '\n'.join(
            f'  {name}: exits {dict(sorted(counts.items()))}'
            for name, counts in self.exit_counts.items())
