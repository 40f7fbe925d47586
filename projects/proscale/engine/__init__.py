# Copyright (c) The proscale Authors. All rights reserved.
from . import early_exit_model, hooks, loops  # noqa: F401
