# Copyright (c) The proscale Authors. All rights reserved.
"""The early-exit model of a runner, for the ECO-M2F hooks and loops."""
from functools import reduce
from typing import Sequence

from torch import nn

from ..utils import unwrap_model

_MISSING = object()


def early_exit_model(model: nn.Module, user: str,
                     required: Sequence[str]) -> nn.Module:
    """Unwrap a runner's model and check that it is an early-exit model.

    Args:
        model (nn.Module): The runner's model, wrapped (e.g. DDP) or not.
        user (str): What needs the model (e.g. ``'ExitSamplingHook'``), for
            the error message.
        required (Sequence[str]): Attributes the model must have; dotted
            names reach into submodules (e.g.
            ``'panoptic_head.pixel_decoder.gate_features'``).

    Returns:
        nn.Module: The unwrapped model.

    Raises:
        TypeError: Naming ``user``, the model's type and the missing
            attributes.
    """
    model = unwrap_model(model)
    missing = [
        name for name in required
        if reduce(lambda obj, attr: getattr(obj, attr, _MISSING),
                  name.split('.'), model) is _MISSING
    ]
    if missing:
        raise TypeError(
            f"{user} needs an early-exit model such as 'EcoMask2Former' or "
            "'EcoDINO' "
            f"({', '.join(missing)} missing), got "
            f"'{type(model).__name__}' (model.type in the config)")
    return model
