# Copyright (c) The proscale Authors. All rights reserved.
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from torch import Tensor

TRC_TYPES = ('linear', 'conv')
TRC_LAYOUTS = ('legacy', 'spatial')
TRC_KEYS = ('type', 'temperature', 'layout')


@MODELS.register_module()
class TokenRecalibration(BaseModule):
    """Token re-calibration (TRC) of PRO-SCALE.

    Gates coarse-scale tokens with a map predicted from the fine-scale
    (1/8) tokens, so that the coarse stages of the progressive encoder see
    high-resolution context:

    .. math::

        g(X_s) = X_s \\cdot \\sigma(\\tau (W \\cdot
        \\mathrm{resize}(X_{fine} \\to H_s \\times W_s) + b))

    ``W`` is a ``Linear(C, 1)`` (``proj_type='linear'``) or a 1x1
    ``Conv2d(C, 1)`` (``proj_type='conv'``). One module is shared by every
    coarse scale it gates.

    Two token layouts are offered:

    - ``'spatial'``: the tokens are permuted to ``(B, C, H, W)`` maps, the
      fine map is bilinearly resized to the coarse grid, and every coarse
      token is gated from its co-located fine neighbourhood, as the paper
      describes. With this layout ``'linear'`` and ``'conv'`` compute the
      same function.
    - ``'legacy'``: bit-exact reproduction of the authors' released code,
      which reinterprets the ``(B, L, C)`` token memory as ``(B, C, H, W)``
      (a reshape without permutation) before resizing, and reshapes back the
      same way. The "spatial" resize then runs on a scrambled layout. The
      ``'conv'`` variant also reinterprets the gated coarse tokens. Needed to
      run the authors' checkpoints.

    Args:
        embed_dims (int): Token channels C. Defaults to 256.
        proj_type (str): ``'linear'`` or ``'conv'``. Defaults to
            ``'linear'``.
        temperature (float): Positive temperature tau of the sigmoid gate.
            Defaults to 0.1.
        layout (str): ``'legacy'`` or ``'spatial'``. Defaults to
            ``'legacy'``.
        init_cfg (:obj:`ConfigDict` or dict or list, optional):
            Initialization config dict. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 proj_type: str = 'linear',
                 temperature: float = 0.1,
                 layout: str = 'legacy',
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if proj_type not in TRC_TYPES:
            raise ValueError(f'Unknown TRC type {proj_type!r}; expected one '
                             f'of {TRC_TYPES}.')
        if layout not in TRC_LAYOUTS:
            raise ValueError(f'Unknown TRC layout {layout!r}; expected one '
                             f'of {TRC_LAYOUTS}.')
        is_number = isinstance(temperature, (int, float))
        if not is_number or isinstance(temperature, bool) or temperature <= 0:
            raise ValueError('TRC temperature must be a positive number, '
                             f'got {temperature!r}.')
        self.embed_dims = embed_dims
        self.proj_type = proj_type
        self.temperature = float(temperature)
        self.layout = layout
        if proj_type == 'linear':
            self.proj = nn.Linear(embed_dims, 1)
        else:
            self.proj = nn.Conv2d(embed_dims, 1, kernel_size=1)

    def forward(self, coarse: Tensor, coarse_hw: Tuple[int, int], fine: Tensor,
                fine_hw: Tuple[int, int]) -> Tensor:
        """Gate coarse tokens from fine tokens.

        Args:
            coarse (Tensor): Coarse tokens X_s, shape (B, Hs * Ws, C), in
                row-major (h, w) order.
            coarse_hw (tuple[int, int]): Coarse grid size (Hs, Ws).
            fine (Tensor): Fine tokens, shape (B, Hf * Wf, C), without any
                position or level embedding.
            fine_hw (tuple[int, int]): Fine grid size (Hf, Wf).

        Returns:
            Tensor: Gated coarse tokens, shape (B, Hs * Ws, C).
        """
        batch_size, num_coarse, channels = coarse.shape
        hs, ws = int(coarse_hw[0]), int(coarse_hw[1])
        hf, wf = int(fine_hw[0]), int(fine_hw[1])
        if self.layout == 'spatial':
            fine_map = fine.transpose(1, 2).reshape(batch_size, channels, hf,
                                                    wf)
        else:
            fine_map = fine.reshape(batch_size, channels, hf, wf)
        resized = F.interpolate(
            fine_map, size=(hs, ws), mode='bilinear', align_corners=False)

        if self.layout == 'spatial':
            if self.proj_type == 'linear':
                logits = self.proj(resized.flatten(2).transpose(1, 2))
            else:
                logits = self.proj(resized).flatten(2).transpose(1, 2)
            return coarse * (self.temperature * logits).sigmoid()

        if self.proj_type == 'linear':
            logits = self.proj(
                resized.reshape(batch_size, num_coarse, channels))
            return coarse * (self.temperature * logits).sigmoid()
        gate = (self.temperature * self.proj(resized)).sigmoid()
        coarse_map = coarse.reshape(batch_size, channels, hs, ws)
        return (coarse_map * gate).reshape(batch_size, num_coarse, channels)

    def forward_scales(self, tokens: Sequence[Tensor],
                       hws: Sequence[Tuple[int, int]]) -> List[Tensor]:
        """Gate every scale but the finest from the finest one.

        Args:
            tokens (Sequence[Tensor]): Tokens of ``L`` scales ordered coarse
                to fine, each of shape (B, H_i * W_i, C), without position
                or level embedding.
            hws (Sequence[tuple[int, int]]): Grid size (H_i, W_i) of each
                scale.

        Returns:
            list[Tensor]: The ``L - 1`` coarser scales gated by this module,
            then the finest scale unchanged; shapes as ``tokens``.
        """
        fine, fine_hw = tokens[-1], hws[-1]
        gated = [
            self(coarse, coarse_hw, fine, fine_hw)
            for coarse, coarse_hw in zip(tokens[:-1], hws[:-1])
        ]
        return gated + [fine]


def build_token_recalibration(
        trc: Optional[dict], embed_dims: int) -> Optional[TokenRecalibration]:
    """Build a :class:`TokenRecalibration` from an encoder's ``trc`` option.

    Args:
        trc (dict, optional): ``type`` (``'linear'`` or ``'conv'``, the
            projection), ``temperature`` and ``layout``; missing keys take
            :class:`TokenRecalibration`'s defaults. None disables TRC.
        embed_dims (int): Token channels.

    Returns:
        TokenRecalibration | None: The module, or None without ``trc``.

    Raises:
        ValueError: If ``trc`` is not a dict or has unknown keys.
    """
    if trc is None:
        return None
    if not isinstance(trc, dict):
        raise ValueError(f'trc must be a dict or None, got {trc!r}.')
    unknown = set(trc) - set(TRC_KEYS)
    if unknown:
        raise ValueError(f'Unknown TRC option(s) {sorted(unknown)}; '
                         f'expected keys among {TRC_KEYS}.')
    trc = dict(trc)
    return TokenRecalibration(
        embed_dims=embed_dims, proj_type=trc.pop('type', 'linear'), **trc)
