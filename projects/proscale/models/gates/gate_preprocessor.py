# Copyright (c) The proscale Authors. All rights reserved.
"""Standardisation of the exit gate's inputs during its training."""
from typing import Dict

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseDataPreprocessor
from torch import Tensor


@MODELS.register_module()
class ExitGatePreprocessor(BaseDataPreprocessor):
    """Standardise the pooled gate inputs per channel.

    The statistics are buffers (saved in checkpoints); the identity until
    :meth:`set_statistics` (called by ``ExitGateTrainingHook`` with the
    training images' statistics). Once training ends they are folded into
    the gate (:meth:`ExitGate.fold_input_normalization`), which then runs on
    raw features.

    Args:
        num_channels (int): Channels of the gate input.
        non_blocking (bool): Copy the data to the device without blocking.
            Defaults to False.
    """

    def __init__(self, num_channels: int, non_blocking: bool = False) -> None:
        super().__init__(non_blocking)
        self.register_buffer('mean', torch.zeros(num_channels))
        self.register_buffer('std', torch.ones(num_channels))

    @torch.no_grad()
    def set_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Set the per-channel statistics.

        Args:
            mean (Tensor): Mean, shape (C, ).
            std (Tensor): Standard deviation (> 0), shape (C, ).
        """
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(
                f'gate input statistics of shape {tuple(mean.shape)} and '
                f'{tuple(std.shape)} for a gate of {self.mean.numel()} '
                'input channels')
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, data: dict, training: bool = False) -> Dict[str, Tensor]:
        """Move a batch to the device and standardise its gate inputs.

        Args:
            data (dict): ``inputs`` (shape (B, C)) and ``quality``
                (shape (B, E)) from ``ExitGateDataset``.
            training (bool): Unused; the same in training and testing.

        Returns:
            dict: ``data`` with ``inputs`` replaced by
            ``(inputs - mean) / std``.
        """
        inputs, quality = (
            data[key].to(self.device, non_blocking=self._non_blocking)
            for key in ('inputs', 'quality'))
        return dict(inputs=(inputs - self.mean) / self.std, quality=quality)
