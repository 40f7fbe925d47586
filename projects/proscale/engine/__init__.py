from . import (exit_flops, gate_sweep, gate_training, hooks,  # noqa: F401
               loops)
