# Copyright (c) The proscale Authors. All rights reserved.
"""Checks of a checkpoint given on the command line: it can be read, and it
fits the model it is loaded into.

mmengine's runner loads ``load_from`` non-strictly: a checkpoint of another
architecture only logs size-mismatch warnings, and the run then evaluates a
partly random model. :func:`check_checkpoint_matches` turns that into one
error line listing a few of the keys at fault.
"""
import copy
import hashlib
import os.path as osp
import re
import zipfile
from typing import Any, Dict, List

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from .distributed import unwrap_model

# Keys shown per kind of mismatch in an error message.
_SHOWN_KEYS = 3
# Key renames mmengine's ``Runner.load_checkpoint`` applies.
_REVISE_KEYS = ((r'^module\.', ''), )


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


def checkpoint_sha256(path: str) -> str:
    """Return the SHA-256 hex digest of a file (e.g. a checkpoint).

    Args:
        path (str): The file.

    Returns:
        str: 64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str) -> Any:
    """Read a checkpoint file, naming it in any error.

    Files in torch's zip format are memory-mapped, so checking a large
    checkpoint costs little more than reading its index.

    Args:
        path (str): The checkpoint file.

    Returns:
        Any: The loaded object (tensors memory-mapped where possible).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointError: If it is not a readable checkpoint (truncated, not
            written by ``torch.save``, ...).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    try:
        return torch.load(
            path, map_location='cpu', mmap=zipfile.is_zipfile(path))
    except Exception as error:  # torch raises many types for bad files
        reason = str(error).strip().split('\n')[0].split('. ')[0]
        raise CheckpointError(
            f'checkpoint {path} cannot be read ({type(error).__name__}: '
            f'{reason}); is it complete and written by torch.save?'
        ) from error


def checkpoint_state_dict(checkpoint: Any, path: str) -> Dict[str, Any]:
    """Return the model weights of a loaded checkpoint, keys as mmengine
    loads them (``module.`` prefixes removed).

    Args:
        checkpoint (Any): A loaded checkpoint: mmengine's dict with a
            ``state_dict``, or a bare state dict.
        path (str): Its file, for the error message.

    Returns:
        dict: Parameter name -> tensor.

    Raises:
        CheckpointError: If it holds no state dict.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'checkpoint {path} holds a '
                              f'{type(checkpoint).__name__}, not a dict of '
                              'weights')
    state_dict = checkpoint.get('state_dict', checkpoint)
    revised = {}
    for key, value in state_dict.items():
        for pattern, repl in _REVISE_KEYS:
            key = re.sub(pattern, repl, key)
        revised[key] = value
    return revised


def state_dict_mismatch(model: nn.Module,
                        state_dict: Dict[str, Any]) -> Dict[str, List[str]]:
    """Compare a state dict with a model's, as ``strict=True`` loading does.

    BatchNorm's ``num_batches_tracked`` is ignored when missing, as in
    mmengine's ``load_state_dict``.

    Args:
        model (nn.Module): The model (a wrapper is unwrapped).
        state_dict (dict): The weights to load.

    Returns:
        dict[str, list[str]]: ``missing`` (model keys not in the weights),
        ``unexpected`` (weights the model has no place for) and ``shape``
        (``'key: (checkpoint shape) vs (model shape)'``), each sorted.
    """
    expected = unwrap_model(model).state_dict()
    missing = sorted(k for k in expected if k not in state_dict
                     and not k.endswith('num_batches_tracked'))
    unexpected = sorted(k for k in state_dict if k not in expected)
    shape = sorted(
        f'{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items()
        if k in state_dict and hasattr(state_dict[k], 'shape')
        and tuple(state_dict[k].shape) != tuple(v.shape))
    return dict(missing=missing, unexpected=unexpected, shape=shape)


def build_config_model(cfg: Config) -> nn.Module:
    """Build a config's model on the CPU, for its parameter names and
    shapes (no ``init_weights``: no pretrained weights are read).

    Args:
        cfg (Config): The full config (``model`` and ``default_scope``).

    Returns:
        nn.Module: The model.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    # Some detectors (DINO, Deformable DETR) write into their config dict
    # while they are built: build from a copy, the runner builds again.
    return MODELS.build(copy.deepcopy(cfg.model))


def check_checkpoint_matches(model: nn.Module, path: str) -> None:
    """Check that a checkpoint holds exactly the weights of a model.

    Args:
        model (nn.Module): The model it will be loaded into (e.g. from
            :func:`build_config_model`).
        path (str): The checkpoint file.

    Raises:
        CheckpointError: Naming the file, how many keys are missing,
            unexpected or of another shape, and a few of each.
    """
    state_dict = checkpoint_state_dict(read_checkpoint(path), path)
    mismatch = state_dict_mismatch(model, state_dict)
    parts = []
    for kind, keys in mismatch.items():
        if keys:
            shown = ', '.join(keys[:_SHOWN_KEYS])
            more = ', ...' if len(keys) > _SHOWN_KEYS else ''
            label = 'with another shape' if kind == 'shape' else kind
            parts.append(f'{len(keys)} {label} ({shown}{more})')
    if parts:
        raise CheckpointError(
            f'checkpoint {path} does not fit the model of the config: '
            f"{'; '.join(parts)}")
