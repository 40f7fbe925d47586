"""proscale: efficient multi-scale encoders for Mask2Former-style models.

Importing this package registers every module in mmdet's, mmseg's and
mmengine's registries (use
``custom_imports=dict(imports=['projects.proscale'])`` in a config) and
applies the stack compatibility shims.
"""
from .utils import (allow_mmengine_checkpoint_globals,
                    silence_pkg_resources_deprecation)

allow_mmengine_checkpoint_globals()
silence_pkg_resources_deprecation()

from . import analysis, datasets, engine, evaluation, models  # noqa: E402,F401

__version__ = '0.1.0'
