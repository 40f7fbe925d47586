# Copyright (c) The proscale Authors. All rights reserved.
"""The exit gate as a trainable mmengine model (ECO-M2F step C)."""
import copy
from typing import Dict, List, Optional, Union

import torch
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModel
from torch import Tensor

from .exit_gate import ExitGate
from .exit_targets import check_exits
from .gate_losses import build_gate_loss


@MODELS.register_module()
class ExitGateModel(BaseModel):
    """An :class:`ExitGate` trained against the exit utilities of ``beta``.

    Trains on batches of ``ExitGateDataset``: the gate inputs (standardised
    by the data preprocessor, :class:`ExitGatePreprocessor`) and the
    per-exit quality ``q``, from which the model builds the utilities
    ``u = q - beta * k`` (:func:`exit_utility`) and the loss's targets.
    :meth:`trained_gate` returns the gate with the standardisation folded
    in, which runs on raw features (``GATE.pth``,
    ``tools/eco/merge_gate.py``).

    Args:
        gate (:obj:`ConfigDict` or dict): The ``ExitGate`` config (exits,
            in_channels, hidden_channels, input_levels, input_depth).
        beta (float): Cost of one encoder layer in quality units, >= 0.
        loss (str): Loss name: 'hard_ce' (``ExitHardCELoss``, the paper's),
            'soft_ce' or 'soft_mse'. Defaults to 'hard_ce'.
        temperature (float): Target temperature of the soft losses.
            Defaults to 0.05.
        data_preprocessor (:obj:`ConfigDict` or dict, optional): Defaults to
            ``ExitGatePreprocessor`` with the gate's input channels.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to None.
    """

    def __init__(self,
                 gate: ConfigType,
                 beta: float,
                 loss: str = 'hard_ce',
                 temperature: float = 0.05,
                 data_preprocessor: Optional[ConfigType] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        preprocessor = dict(
            type='mmdet.ExitGatePreprocessor',
            num_channels=gate['in_channels'])
        preprocessor.update(data_preprocessor or {})
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        if not beta >= 0:
            raise ValueError(f'beta must be a number >= 0, got {beta!r}')
        self.gate: ExitGate = MODELS.build(gate)
        self.beta = float(beta)
        self.loss_name = loss
        self.temperature = temperature
        self.criterion = build_gate_loss(loss, temperature)
        self.register_buffer(
            'exit_costs', check_exits(self.gate.exits), persistent=False)

    def train(self, mode: bool = True) -> 'ExitGateModel':
        """Set the training mode of the model and its modules.

        ``IterBasedTrainLoop`` calls ``model.train()`` before every step;
        for a gate, walking its modules costs about a tenth of the step, so
        a mode that every module already has returns at once.

        Args:
            mode (bool): Training (True) or evaluation mode.

        Returns:
            ExitGateModel: The model.
        """
        if all(module.training == mode for module in self.modules()):
            return self
        return super().train(mode)

    def utility(self, quality: Tensor) -> Tensor:
        """Utilities ``q - beta * k`` of every exit.

        Args:
            quality (Tensor): Per-image quality, shape (B, E).

        Returns:
            Tensor: Utilities, shape (B, E), float64.
        """
        return quality.double() - self.beta * self.exit_costs

    def forward(self,
                inputs: Tensor,
                quality: Optional[Tensor] = None,
                mode: str = 'tensor') -> Union[Tensor, Dict[str, Tensor],
                                               List[Dict[str, Tensor]]]:
        """Run the gate on standardised inputs.

        Args:
            inputs (Tensor): Standardised gate inputs, shape (B, C).
            quality (Tensor, optional): Per-exit quality, shape (B, E);
                needed for 'loss' and 'predict'.
            mode (str): 'tensor' (the logits, shape (B, E)), 'loss' (a dict
                with ``loss_gate``) or 'predict' (a one-element list with the
                batch's ``choice`` (exit indices, shape (B, )), ``quality``
                and ``utility`` (both (B, E)), for ``ExitGateMetric``).
                Defaults to 'tensor'.

        Returns:
            Tensor | dict | list[dict]: See ``mode``.
        """
        logits = self.gate(inputs)
        if mode == 'tensor':
            return logits
        if quality is None:
            raise ValueError(f"ExitGateModel: mode {mode!r} needs the "
                             'quality of every exit')
        utility = self.utility(quality)
        if mode == 'loss':
            return dict(loss_gate=self.criterion(logits, utility))
        if mode == 'predict':
            return [
                dict(
                    choice=logits.argmax(dim=1),
                    quality=quality,
                    utility=utility)
            ]
        raise ValueError(f"ExitGateModel: mode must be 'tensor', 'loss' or "
                         f"'predict', got {mode!r}")

    @torch.no_grad()
    def trained_gate(self) -> ExitGate:
        """A copy of the gate with the input standardisation folded in.

        Returns:
            ExitGate: The gate, on raw features, in eval mode and marked
            trained, on the CPU.
        """
        gate = copy.deepcopy(self.gate).cpu().eval()
        gate.fold_input_normalization(self.data_preprocessor.mean.cpu(),
                                      self.data_preprocessor.std.cpu())
        gate.trained.fill_(True)
        return gate
