# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F's gate side: exit samples (step B's output), gate training
(step C) and the beta search / sweep over it."""
from . import (beta_search, exit_samples, gate_sweep,  # noqa: F401
               gate_training)
