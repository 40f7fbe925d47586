# Copyright (c) The proscale Authors. All rights reserved.
"""Compatibility shims for the pinned stack (torch 2.13, mmengine 0.10.7).

Two things break out of the box on this stack:

* torch >= 2.6 loads checkpoints with ``weights_only=True`` by default and
  refuses the Python objects that mmengine's runner stores in its checkpoint
  meta (``HistoryBuffer`` and numpy arrays/scalars of the message hub), so
  ``--resume`` and ``tools/test.py CKPT`` fail (mmengine#1655). Instead of
  turning the safe loader off, :func:`allow_mmengine_checkpoint_globals` adds
  exactly those types to torch's allow-list, and
  :func:`pickle_history_buffers_without_functions` stops ``HistoryBuffer``
  from pickling its default statistics functions (which would need the unsafe
  ``getattr`` global); they are restored on load anyway.
* ``mmdet::`` / ``mmseg::`` config bases are resolved by mmengine through
  ``pkg_resources``, which recent setuptools no longer ships.
  :func:`check_package_config_support` turns the obscure failure into a clear
  error, and :func:`silence_pkg_resources_deprecation` mutes the deprecation
  warning that mmengine's reload of ``pkg_resources`` repeats at every
  ``mmdet::`` base it resolves (the pin to setuptools < 81 is deliberate).
"""
import importlib.util
import warnings
from typing import List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


def _numpy_pickle_globals() -> List[object]:
    """Return the numpy objects that pickled arrays, dtypes and scalars use."""
    multiarray = np.core.multiarray
    dtype_classes = [
        getattr(np.dtypes, name) for name in dir(np.dtypes)
        if name.endswith('DType')
    ]
    return [
        multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
        *dtype_classes
    ]


_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_state(buffer: HistoryBuffer) -> dict:
    """Return the pickled state of a ``HistoryBuffer``.

    Only custom statistics methods are kept: ``HistoryBuffer.__setstate__``
    registers the default ones again on load.
    """
    state = {
        key: value
        for key, value in buffer.__dict__.items()
        if key != 'statistics_methods'
    }
    custom_methods = {
        name: method
        for name, method in buffer._statistics_methods.items()
        if name not in _DEFAULT_STATISTICS
    }
    if custom_methods:
        state['statistics_methods'] = custom_methods
    return state


def pickle_history_buffers_without_functions() -> None:
    """Make checkpoints saved from now on loadable with ``weights_only``."""
    HistoryBuffer.__getstate__ = _history_buffer_state


def mmengine_checkpoint_globals() -> List[object]:
    """Return every non-tensor global found in an mmengine runner checkpoint.

    Returns:
        list: Classes and functions to allow-list for ``weights_only`` loads.
    """
    return [HistoryBuffer, *_numpy_pickle_globals()]


def allow_mmengine_checkpoint_globals() -> None:
    """Allow-list mmengine's checkpoint contents for torch's safe loader.

    Idempotent; a no-op on torch versions without ``add_safe_globals``.
    """
    pickle_history_buffers_without_functions()
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(mmengine_checkpoint_globals())


def check_package_config_support() -> None:
    """Raise a clear error if ``mmdet::`` config bases cannot be resolved.

    Raises:
        ImportError: If ``pkg_resources`` (setuptools < 81) is missing.
    """
    if importlib.util.find_spec('pkg_resources') is None:
        raise ImportError(
            "Config bases such as 'mmdet::mask2former/...' need "
            "'pkg_resources', which setuptools>=81 no longer ships. Install "
            "'setuptools>=77,<81' (run `make install`).")


def silence_pkg_resources_deprecation() -> None:
    """Ignore setuptools' ``pkg_resources is deprecated`` warning.

    mmengine 0.10.7 reloads ``pkg_resources`` whenever it resolves a
    ``mmdet::`` / ``mmseg::`` config base, which prints the same warning again
    each time. Only that warning is ignored.
    """
    warnings.filterwarnings(
        'ignore',
        message='pkg_resources is deprecated as an API',
        category=UserWarning)
