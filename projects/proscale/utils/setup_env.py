# Copyright (c) The proscale Authors. All rights reserved.
"""Environment set-up applied once when ``proscale`` is imported."""
from .compat import (allow_mmengine_checkpoint_globals,
                     silence_pkg_resources_deprecation)


def setup_env() -> None:
    """Apply the stack compatibility shims (idempotent).

    Lets torch's safe checkpoint loader read mmengine's runner checkpoints
    (mmengine#1655) and mutes the ``pkg_resources`` deprecation warning that
    mmengine repeats for every ``mmdet::`` config base.
    """
    allow_mmengine_checkpoint_globals()
    silence_pkg_resources_deprecation()
