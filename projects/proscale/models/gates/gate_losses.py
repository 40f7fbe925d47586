# Copyright (c) The proscale Authors. All rights reserved.
"""Losses of the ECO-M2F exit gate.

Every loss takes the gate's logits and the per-image exit utilities
``u = q - beta * k`` (see :mod:`.exit_targets`), both of shape (N, E), and
builds its target from ``u`` per image. Soft targets are normalised along the
exit dimension, so every loss is defined, non-zero and differentiable for a
single image (the authors' soft targets are normalised along the batch and
vanish at batch size 1).
"""
from abc import ABCMeta, abstractmethod

import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

from .exit_targets import hard_exit_targets, soft_exit_targets


class BaseExitGateLoss(nn.Module, metaclass=ABCMeta):
    """Shared checks of the exit gate losses.

    Args:
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, utility: Tensor) -> Tensor:
        """Compute the loss averaged over the images.

        Args:
            logits (Tensor): Gate logits, shape (N, E).
            utility (Tensor): Exit utilities, shape (N, E).

        Returns:
            Tensor: The weighted scalar loss.
        """
        if logits.dim() != 2 or logits.shape != utility.shape:
            raise ValueError(
                f'logits and utility must both have shape (N, E), got '
                f'{tuple(logits.shape)} and {tuple(utility.shape)}')
        if logits.shape[0] == 0:
            raise ValueError('the gate loss needs at least one image')
        return self.loss_weight * self._loss(logits, utility.detach())

    @abstractmethod
    def _loss(self, logits: Tensor, utility: Tensor) -> Tensor:
        """The unweighted loss, averaged over the images."""


@MODELS.register_module()
class ExitHardCELoss(BaseExitGateLoss):
    """Cross-entropy against the best exit (ties to the shallowest).

    The paper's default and best-performing gate loss.
    """

    def _loss(self, logits: Tensor, utility: Tensor) -> Tensor:
        return F.cross_entropy(logits, hard_exit_targets(utility))


class BaseSoftExitGateLoss(BaseExitGateLoss):
    """Base of the losses against the soft targets ``softmax(u / T)``.

    Args:
        temperature (float): Target temperature ``T`` in quality units.
            Defaults to 0.05.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 temperature: float = 0.05,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.temperature = temperature

    def _loss(self, logits: Tensor, utility: Tensor) -> Tensor:
        target = soft_exit_targets(utility, self.temperature).to(logits)
        return self._soft_loss(logits, target)

    @abstractmethod
    def _soft_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The unweighted loss against the soft targets (N, E), averaged
        over the images."""


@MODELS.register_module()
class ExitSoftCELoss(BaseSoftExitGateLoss):
    """Cross-entropy against ``softmax(u / T)`` over the exits.

    Args:
        temperature (float): Target temperature ``T`` in quality units.
            Defaults to 0.05.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def _soft_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@MODELS.register_module()
class ExitSoftMSELoss(BaseSoftExitGateLoss):
    """Squared error between the gate's and the target exit distributions.

    ``sum_k (softmax(logits)_k - softmax(u / T)_k) ** 2``, averaged over the
    images.

    Args:
        temperature (float): Target temperature ``T`` in quality units.
            Defaults to 0.05.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def _soft_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return (logits.softmax(dim=1) - target).pow(2).sum(dim=1).mean()


# The gate losses by their short names (the gate tools' ``--loss``).
GATE_LOSSES = {
    'hard_ce': 'ExitHardCELoss',
    'soft_ce': 'ExitSoftCELoss',
    'soft_mse': 'ExitSoftMSELoss',
}


def build_gate_loss(loss: str = 'hard_ce',
                    temperature: float = 0.05) -> nn.Module:
    """Build a gate loss by its short name.

    Args:
        loss (str): One of :data:`GATE_LOSSES`. Defaults to 'hard_ce'.
        temperature (float): Target temperature of the soft losses.
            Defaults to 0.05.

    Returns:
        nn.Module: The loss, called as ``loss(logits, utility)``.
    """
    if loss not in GATE_LOSSES:
        raise ValueError(
            f'unknown gate loss {loss!r}; choose from {sorted(GATE_LOSSES)}')
    cfg = dict(type=GATE_LOSSES[loss])
    if loss != 'hard_ce':
        cfg['temperature'] = temperature
    return MODELS.build(cfg)
