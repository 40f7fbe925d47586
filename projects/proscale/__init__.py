# Copyright (c) The proscale Authors. All rights reserved.
"""proscale: efficient multi-scale encoders for Mask2Former-style models.

Importing this package registers every module in mmdet's, mmseg's and
mmengine's registries (use ``custom_imports=dict(imports=['proscale'])`` in
a config) and applies the stack compatibility shims
(:func:`proscale.utils.setup_env`). Imported before torch, it also makes
OpenMP's idle threads wait passively (:mod:`proscale.openmp_env`).
"""
from .openmp_env import default_to_passive_openmp_wait

default_to_passive_openmp_wait()

from .utils.setup_env import setup_env  # noqa: E402

setup_env()

from . import (analysis, datasets, engine, evaluation,  # noqa: E402,F401
               models, ops)

__version__ = '0.2.0'
