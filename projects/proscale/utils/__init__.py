from .atomic_file import atomic_open
from .compat import (allow_mmengine_checkpoint_globals,
                     check_package_config_support, mmengine_checkpoint_globals,
                     silence_pkg_resources_deprecation)
from .distributed import cpu_dist_cfg, init_cpu_distributed, unwrap_model
from .torch_threads import torch_threads

__all__ = [
    'allow_mmengine_checkpoint_globals', 'atomic_open',
    'check_package_config_support', 'cpu_dist_cfg', 'init_cpu_distributed',
    'mmengine_checkpoint_globals', 'silence_pkg_resources_deprecation',
    'torch_threads', 'unwrap_model'
]
