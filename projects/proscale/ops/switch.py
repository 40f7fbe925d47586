# Copyright (c) The proscale Authors. All rights reserved.
"""One switch for this project's fast CPU inference paths.

When enabled (the default), inference on the CPU uses the fused
multi-scale deformable attention kernel
(:func:`proscale.ops.multi_scale_deformable_attn`) and the light pixel
embedding's index-free max-pool
(:func:`proscale.models.layers.light_pixel_embedding.max_pool3x3`); both
give the plain PyTorch results to float precision. When disabled, the
plain PyTorch paths (mmcv's ``multi_scale_deformable_attn_pytorch``,
``nn.MaxPool2d``) run everywhere, e.g. to compare both in one process.
"""
import os
from contextlib import contextmanager
from typing import Iterator

ENV_SWITCH = 'PROSCALE_FUSED_OPS'
_state = dict(enabled=os.getenv(ENV_SWITCH, '1') != '0')


def is_enabled() -> bool:
    """bool: Whether the fast CPU paths may run.

    True unless the environment sets ``PROSCALE_FUSED_OPS=0`` or
    :func:`fused_ops` switched them off.
    """
    return _state['enabled']


@contextmanager
def fused_ops(enabled: bool) -> Iterator[None]:
    """Turn the fast CPU paths on or off inside a ``with`` block.

    Args:
        enabled (bool): False runs the plain PyTorch paths everywhere.
    """
    previous = _state['enabled']
    _state['enabled'] = bool(enabled)
    try:
        yield
    finally:
        _state['enabled'] = previous
