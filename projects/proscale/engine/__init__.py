from . import early_exit_model, hooks, loops  # noqa: F401
