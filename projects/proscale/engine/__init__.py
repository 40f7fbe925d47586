from . import (beta_search, early_exit_model, exit_flops,  # noqa: F401
               exit_samples, gate_sweep, gate_training, hooks, loops)
