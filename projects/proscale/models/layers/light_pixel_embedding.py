# Copyright (c) The proscale Authors. All rights reserved.
import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from mmdet.registry import MODELS
from mmdet.utils import OptConfigType, OptMultiConfig
from torch import Tensor

from ...ops import is_enabled


def _max3(x: Tensor, dim: int) -> Tensor:
    """Maximum over a window of 3 along ``dim``, stride 1, padding 1."""
    size = x.size(dim)
    pairs = torch.maximum(
        x.narrow(dim, 0, size - 1), x.narrow(dim, 1, size - 1))
    out = torch.empty_like(x)
    out.narrow(dim, 0, 1).copy_(pairs.narrow(dim, 0, 1))
    out.narrow(dim, size - 1, 1).copy_(pairs.narrow(dim, size - 2, 1))
    torch.maximum(
        pairs.narrow(dim, 0, size - 2),
        pairs.narrow(dim, 1, size - 2),
        out=out.narrow(dim, 1, size - 2))
    return out


def max_pool3x3(x: Tensor) -> Tensor:
    """3x3 max-pool with stride 1 and padding 1, without indices.

    The same values as ``nn.MaxPool2d(3, 1, 1)``, computed as a horizontal
    then a vertical window of 3 from pairwise maxima; on the CPU about
    2.5 times faster than ``max_pool2d``, which also computes indices.

    Args:
        x (Tensor): Input of shape (..., H, W), H and W at least 2.

    Returns:
        Tensor: Output of the same shape.
    """
    return _max3(_max3(x, -1), -2)


@MODELS.register_module()
class LightPixelEmbedding(BaseModule):
    """Light pixel embedding (LPE) of PRO-SCALE.

    A parameter-light replacement of the 3x3 ``ConvModule`` (conv + norm +
    activation) of the FPN step of the pixel decoder: a 3x3 max-pool with
    stride 1 and padding 1, followed by the norm and the activation.

    Args:
        channels (int): Number of channels of the input and output.
        norm_cfg (:obj:`ConfigDict` or dict, optional): Config of the norm
            layer; None for none. Defaults to dict(type='GN', num_groups=32).
        act_cfg (:obj:`ConfigDict` or dict, optional): Config of the
            activation; None for none. Defaults to dict(type='ReLU').
        init_cfg (:obj:`ConfigDict` or dict or list, optional):
            Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 norm_cfg: OptConfigType = dict(type='GN', num_groups=32),
                 act_cfg: OptConfigType = dict(type='ReLU'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.norm = build_norm_layer(
            norm_cfg, channels)[1] if norm_cfg is not None else nn.Identity()
        self.activate = build_activation_layer(
            act_cfg) if act_cfg is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Embed a feature map.

        Args:
            x (Tensor): Input of shape (B, C, H, W).

        Returns:
            Tensor: Output of shape (B, C, H, W).
        """
        return self.activate(self.norm(self._max_pool(x)))

    def _max_pool(self, x: Tensor) -> Tensor:
        """Max-pool: :func:`max_pool3x3` unless gradients are needed.

        ``torch.maximum`` would split the gradient of ties, max-pool does
        not, so training keeps ``self.pool``; so does
        ``proscale.ops.fused_ops(False)``.
        """
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        if needs_grad or not is_enabled() or min(x.shape[-2:]) < 2:
            return self.pool(x)
        return max_pool3x3(x)
