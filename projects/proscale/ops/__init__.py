from .ms_deform_attn import (fused_msda, is_available, is_enabled,
                             multi_scale_deformable_attn)

__all__ = [
    'fused_msda', 'is_available', 'is_enabled', 'multi_scale_deformable_attn'
]
