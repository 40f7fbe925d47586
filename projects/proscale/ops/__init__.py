# Copyright (c) The proscale Authors. All rights reserved.
from .ms_deform_attn import (is_available, multi_scale_deformable_attn,
                             multi_scale_deformable_attn_from_points)
from .switch import fused_ops, is_enabled

__all__ = [
    'fused_ops', 'is_available', 'is_enabled', 'multi_scale_deformable_attn',
    'multi_scale_deformable_attn_from_points'
]
