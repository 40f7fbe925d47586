from . import gate_training, hooks, loops  # noqa: F401
