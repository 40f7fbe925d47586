# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F gate targets: the per-image utility of every exit.

For image ``i`` and exit ``k`` (the number of encoder layers run) the
utility trades the image's panoptic quality ``q_ik`` (a fraction in
``[0, 1]``) against compute::

    u_ik = q_ik - beta * k

The hard target is the exit of highest utility, ties going to the
shallowest exit; the soft target is ``softmax(u_i / T)`` along the exit
dimension (never along the batch, so it is defined for a single image).
"""
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

# Utilities closer than this are a tie (resolved to the shallowest exit):
# ``q - beta * k`` is not exact in floating point, so two exits whose true
# utilities are equal may differ in the last bits.
TIE_TOLERANCE = 1e-9

ArrayLike = Union[Tensor, np.ndarray, Sequence[Sequence[float]]]


def check_exits(exits: Sequence[int]) -> Tensor:
    """Check an exit set and return it as a float64 tensor.

    Args:
        exits (Sequence[int]): The exits (numbers of encoder layers), in
            strictly increasing order.

    Returns:
        Tensor: The exits, shape (E, ), dtype float64.

    Raises:
        ValueError: If ``exits`` is empty, not strictly increasing or has a
            value below 1.
    """
    exits = [int(k) for k in exits]
    if not exits:
        raise ValueError('exits must not be empty')
    if any(b <= a for a, b in zip(exits, exits[1:])) or exits[0] < 1:
        raise ValueError(
            f'exits must be strictly increasing positive layer counts, got '
            f'{tuple(exits)}')
    return torch.tensor(exits, dtype=torch.float64)


def _as_quality(quality: ArrayLike, num_exits: int) -> Tensor:
    """Return ``quality`` as a float64 (N, E) tensor, checking its shape."""
    quality = torch.as_tensor(quality, dtype=torch.float64)
    if quality.dim() != 2 or quality.shape[1] != num_exits:
        raise ValueError(
            f'quality must have shape (N, {num_exits}) (one column per '
            f'exit), got {tuple(quality.shape)}')
    return quality


def exit_utility(quality: ArrayLike, exits: Sequence[int],
                 beta: float) -> Tensor:
    """Compute the utility ``u(k) = q_k - beta * k`` of every exit.

    Args:
        quality (Tensor | np.ndarray): Per-image quality at every exit,
            shape (N, E), column ``j`` belonging to ``exits[j]``.
        exits (Sequence[int]): The exits, strictly increasing.
        beta (float): Cost of one encoder layer in quality units, >= 0.

    Returns:
        Tensor: The utilities, shape (N, E), dtype float64.
    """
    if not beta >= 0:
        raise ValueError(f'beta must be a number >= 0, got {beta}')
    exits_t = check_exits(exits)
    quality = _as_quality(quality, len(exits_t))
    return quality - beta * exits_t


def hard_exit_targets(utility: Tensor,
                      tolerance: float = TIE_TOLERANCE) -> Tensor:
    """Index of the best exit per image, ties to the shallowest exit.

    Args:
        utility (Tensor): Utilities, shape (N, E), exits in increasing
            order along the last dimension.
        tolerance (float): Utilities within this distance of the maximum
            count as tied. Defaults to :data:`TIE_TOLERANCE`.

    Returns:
        Tensor: Exit indices (into the exit set, not layer counts), shape
        (N, ), dtype int64.
    """
    if utility.dim() != 2 or utility.shape[1] == 0:
        raise ValueError(f'utility must have shape (N, E) with E >= 1, got '
                         f'{tuple(utility.shape)}')
    best = utility.max(dim=1, keepdim=True).values
    near_best = utility >= best - tolerance
    # argmax over a boolean returns the first True, i.e. the shallowest.
    return near_best.to(torch.uint8).argmax(dim=1)


def soft_exit_targets(utility: Tensor, temperature: float) -> Tensor:
    """Soft targets ``softmax(u / T)`` along the exit dimension.

    Args:
        utility (Tensor): Utilities, shape (N, E).
        temperature (float): Softmax temperature ``T`` > 0, in quality
            units (utilities differing by ``T`` have probabilities in the
            ratio e : 1).

    Returns:
        Tensor: Per-image target distributions over the exits, shape
        (N, E), each row summing to 1.
    """
    if not temperature > 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')
    if utility.dim() != 2:
        raise ValueError(
            f'utility must have shape (N, E), got {tuple(utility.shape)}')
    return torch.softmax(utility / temperature, dim=1)
