from . import (beta_search, exit_flops, exit_samples,  # noqa: F401
               gate_sweep, gate_training, hooks, loops)
