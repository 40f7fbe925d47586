# Copyright (c) OpenMMLab. All rights reserved.
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from mmdet.registry import MODELS
from mmdet.utils import OptConfigType, OptMultiConfig
from torch import Tensor


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
        return self.activate(self.norm(self.pool(x)))
