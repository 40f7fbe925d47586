# Copyright (c) The proscale Authors. All rights reserved.
from .atomic_file import atomic_open
from .compat import (allow_mmengine_checkpoint_globals,
                     check_package_config_support, mmengine_checkpoint_globals,
                     silence_pkg_resources_deprecation)
from .package_files import config_root, package_files_root, resolve_config_path
from .schedule import ScheduleScaler, scale_schedule
from .setup_env import setup_env
from .distributed import cpu_dist_cfg, init_cpu_distributed, unwrap_model
from .torch_threads import torch_threads

__all__ = [
    'allow_mmengine_checkpoint_globals', 'atomic_open',
    'check_package_config_support', 'config_root', 'cpu_dist_cfg',
    'init_cpu_distributed', 'mmengine_checkpoint_globals',
    'package_files_root', 'resolve_config_path', 'scale_schedule',
    'ScheduleScaler', 'setup_env',
    'silence_pkg_resources_deprecation', 'torch_threads', 'unwrap_model'
]
