# Copyright (c) The proscale Authors. All rights reserved.
"""The ECO-M2F exit gate: picks each image's encoder depth."""
from typing import Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn

from .exit_targets import check_exits


@MODELS.register_module()
class ExitGate(BaseModule):
    """Classifier over the encoder exits from the 1/32 features.

    The authors' gate globally average-pools the projected lowest-resolution
    (1/32) features and applies one linear layer with one logit per exit.
    With ``hidden_channels`` set, the linear layer is replaced by a small MLP
    (Linear-ReLU-Linear). With ``input_levels`` > 1 (beyond the paper) its
    input is the pooled projected tokens of that many encoder scales,
    concatenated coarse to fine (e.g. 1/32, 1/16 and 1/8 for 3), which the
    encoder computes anyway. With ``input_depth`` = d > 0 (beyond the paper)
    it reads the tokens after the first ``d`` encoder layers instead; the
    chosen exits (all ``>= d``) then continue from them, so those layers
    still run once per image.

    The boolean buffer ``trained`` is saved with the weights; it is False
    until a gate training sets it, so a model loaded from a checkpoint
    without the gate can refuse to run an untrained gate.

    Args:
        exits (Sequence[int]): The exits (numbers of encoder layers) the gate
            chooses from, strictly increasing; logit ``j`` belongs to
            ``exits[j]``.
        in_channels (int): Channels of the gate input. Defaults to 256.
        hidden_channels (int, optional): Hidden width of the MLP variant;
            None for the authors' linear gate. Defaults to None.
        input_levels (int): Encoder scales pooled into the input, coarse to
            fine; ``in_channels`` counts all of them. Defaults to 1 (the
            1/32 scale, the authors' input).
        input_depth (int): Encoder layers run before the gate reads the
            tokens, at most the shallowest exit. Defaults to 0 (the
            projected tokens, the authors' input).
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to None.
    """

    def __init__(self,
                 exits: Sequence[int],
                 in_channels: int = 256,
                 hidden_channels: Optional[int] = None,
                 input_levels: int = 1,
                 input_depth: int = 0,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(input_levels, bool) or not isinstance(
                input_levels, int) or input_levels < 1 or \
                in_channels % input_levels:
            raise ValueError(
                f'input_levels={input_levels!r}: expected a positive int '
                f'dividing in_channels={in_channels}')
        self.input_levels = input_levels
        self.register_buffer(
            'exit_layers', check_exits(exits).long(), persistent=False)
        if isinstance(input_depth, bool) or not isinstance(
                input_depth, int) or not 0 <= input_depth <= min(self.exits):
            raise ValueError(
                f'input_depth={input_depth!r}: expected an int from 0 to '
                f'the shallowest exit {min(self.exits)}')
        self.input_depth = input_depth
        self.register_buffer('trained', torch.tensor(False))
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        num_exits = len(self.exit_layers)
        if hidden_channels is None:
            self.head = nn.Linear(in_channels, num_exits)
        else:
            self.head = nn.Sequential(
                nn.Linear(in_channels, hidden_channels), nn.ReLU(),
                nn.Linear(hidden_channels, num_exits))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args,
                              **kwargs) -> None:
        """Refuse a trained gate's weights that do not fit this gate.

        mmengine loads checkpoints non-strictly, so a gate file trained with
        other exits or widths would otherwise leave random weights behind a
        ``trained`` flag.
        """
        if prefix + 'trained' in state_dict:
            expected = {
                prefix + name: tuple(value.shape)
                for name, value in self.state_dict().items()
            }
            found = {
                name: tuple(value.shape)
                for name, value in state_dict.items()
                if name.startswith(prefix)
            }
            if found != expected:
                raise ValueError(
                    f"the checkpoint's exit gate at {prefix!r} ({found}) "
                    f'does not fit this gate (exits {self.exits}, in_channels '
                    f'{self.in_channels}, hidden_channels '
                    f'{self.hidden_channels}, input_levels '
                    f'{self.input_levels}: {expected}); make the gate '
                    'config match the trained gate (see meta.gate_cfg in '
                    'the gate file)')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def exits(self) -> Tuple[int, ...]:
        """tuple[int]: The exits, in logit order."""
        return tuple(self.exit_layers.tolist())

    @property
    def input_layer(self) -> nn.Linear:
        """nn.Linear: The layer applied to the pooled input."""
        return self.head if isinstance(self.head, nn.Linear) else self.head[0]

    def pool(self, x: Tensor) -> Tensor:
        """Globally average-pool the gate input.

        Args:
            x (Tensor): Feature maps of shape (B, C, H, W), or already
                pooled features of shape (B, C) (returned unchanged).

        Returns:
            Tensor: Pooled features, shape (B, C).
        """
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'ExitGate expects (B, {self.in_channels}, H, W) feature '
                f'maps or (B, {self.in_channels}) pooled features, got '
                f'shape {tuple(x.shape)}')
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Compute one logit per exit.

        Args:
            x (Tensor): Feature maps (B, C, H, W) or pooled features (B, C).

        Returns:
            Tensor: Logits, shape (B, E).
        """
        return self.head(self.pool(x))

    def predict(self, x: Tensor) -> Tensor:
        """Pick each image's exit (ties to the shallowest).

        Args:
            x (Tensor): Feature maps (B, C, H, W) or pooled features (B, C).

        Returns:
            Tensor: The chosen exits as numbers of encoder layers, shape
            (B, ), dtype int64.
        """
        return self.exit_layers[self(x).argmax(dim=1)]

    @torch.no_grad()
    def fold_input_normalization(self, mean: Tensor, std: Tensor) -> None:
        """Fold a per-channel input standardisation into the input layer.

        After this call ``gate(x)`` equals the former ``gate((x - mean) /
        std)`` exactly up to rounding, so a gate trained on standardised
        inputs runs on raw features with the authors' architecture.

        Args:
            mean (Tensor): Per-channel mean, shape (C, ).
            std (Tensor): Per-channel standard deviation (> 0), shape (C, ).
        """
        if mean.shape != (self.in_channels, ) or mean.shape != std.shape:
            raise ValueError(
                f'mean and std must have shape ({self.in_channels},), got '
                f'{tuple(mean.shape)} and {tuple(std.shape)}')
        layer = self.input_layer
        weight = layer.weight / std.to(layer.weight)
        layer.bias.sub_(weight @ mean.to(weight))
        layer.weight.copy_(weight)
