from .compat import (allow_mmengine_checkpoint_globals,
                     check_package_config_support, mmengine_checkpoint_globals)

__all__ = [
    'allow_mmengine_checkpoint_globals', 'check_package_config_support',
    'mmengine_checkpoint_globals'
]
