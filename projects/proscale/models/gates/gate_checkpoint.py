# Copyright (c) The proscale Authors. All rights reserved.
"""Saving and loading a trained exit gate on its own (``GATE.pth``).

A gate file is an mmengine-style checkpoint::

    {'meta': {'gate_cfg': dict(type='ExitGate', exits=..., in_channels=...,
                               hidden_channels=..., input_levels=...),
              'beta': ..., 'loss': ..., ...},
     'state_dict': <ExitGate.state_dict()>}

so the gate can be rebuilt without any other file. :func:`merge_gate` puts it
into a parent checkpoint (``tools/eco/merge_gate.py``): the gate's weights go
under ``gate.`` in the parent's ``state_dict`` and its meta under
``meta['exit_gate']``, so that one checkpoint runs gated inference with a
config that sets ``model.gate`` and ``model.test_cfg.exit_layer='gate'``.
"""
import os.path as osp
from typing import Dict, Optional, Tuple

import torch
from mmdet.registry import MODELS

from ...utils import atomic_open
from .exit_gate import ExitGate

GATE_PREFIX = 'gate.'


def gate_meta(gate: ExitGate, beta: float, loss: str,
              **extra) -> Dict[str, object]:
    """Describe a trained gate for its gate file.

    Args:
        gate (ExitGate): The gate.
        beta (float): The trade-off it was trained with.
        loss (str): Its loss name.
        **extra: Further JSON-serialisable entries (metrics, provenance).

    Returns:
        dict: ``gate_cfg`` (the config that rebuilds the gate), ``beta``,
        ``loss`` and the extra entries.
    """
    return dict(
        gate_cfg=dict(
            type='ExitGate',
            exits=list(gate.exits),
            in_channels=gate.in_channels,
            hidden_channels=gate.hidden_channels,
            input_levels=gate.input_levels,
            input_depth=gate.input_depth),
        beta=beta,
        loss=loss,
        **extra)


def _save_atomically(checkpoint: dict, path: str) -> None:
    """``torch.save`` so that ``path`` never holds a partial file."""
    with atomic_open(path, 'wb') as f:
        torch.save(checkpoint, f)


def save_gate(gate: ExitGate, meta: dict, path: str) -> None:
    """Write a gate file atomically.

    Args:
        gate (ExitGate): The trained gate.
        meta (dict): Must hold ``gate_cfg``; see the module docstring.
        path (str): Output file.
    """
    if 'gate_cfg' not in meta:
        raise ValueError("gate meta must hold 'gate_cfg'")
    state_dict = {k: v.detach().cpu() for k, v in gate.state_dict().items()}
    _save_atomically(dict(meta=meta, state_dict=state_dict), path)


def load_gate(path: str) -> Tuple[ExitGate, dict]:
    """Rebuild a gate from a gate file.

    Args:
        path (str): A file written by :func:`save_gate`.

    Returns:
        tuple[ExitGate, dict]: The gate (eval mode) and the file's meta.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a gate file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'gate file {path} does not exist')
    checkpoint = torch.load(path, map_location='cpu')
    if (not isinstance(checkpoint, dict)
            or 'gate_cfg' not in checkpoint.get('meta', {})
            or 'state_dict' not in checkpoint):
        raise ValueError(
            f"{path} is not a gate file (expected 'meta.gate_cfg' and "
            "'state_dict', as written by tools/eco/train_gate.py)")
    meta = checkpoint['meta']
    gate = MODELS.build(dict(meta['gate_cfg']))
    gate.load_state_dict(checkpoint['state_dict'])
    return gate.eval(), meta


def merge_gate(parent_path: str,
               gate_path: str,
               out_path: str,
               gate_cfg: Optional[dict] = None) -> dict:
    """Write a copy of a parent checkpoint with a trained gate merged in.

    Args:
        parent_path (str): The parent's checkpoint (mmengine format, with
            ``state_dict``). A gate already in it is replaced.
        gate_path (str): A gate file (:func:`save_gate`).
        out_path (str): The merged checkpoint.
        gate_cfg (dict, optional): The ``model.gate`` config the merged
            checkpoint will run with; when given, it must build the gate of
            the gate file.

    Returns:
        dict: The gate file's meta.

    Raises:
        FileNotFoundError: If an input does not exist.
        ValueError: If the parent is not a checkpoint with a ``state_dict``
            or ``gate_cfg`` does not match the trained gate.
    """
    gate, meta = load_gate(gate_path)
    if gate_cfg is not None:
        configured = MODELS.build(dict(gate_cfg))
        if (configured.exits, configured.in_channels,
                configured.hidden_channels, configured.input_levels,
                configured.input_depth) != (gate.exits, gate.in_channels,
                                            gate.hidden_channels,
                                            gate.input_levels,
                                            gate.input_depth):
            raise ValueError(
                f'model.gate {dict(gate_cfg)} does not match the trained '
                f"gate in {gate_path} ({meta['gate_cfg']})")
    if not osp.isfile(parent_path):
        raise FileNotFoundError(f'checkpoint {parent_path} does not exist')
    checkpoint = torch.load(parent_path, map_location='cpu')
    if not isinstance(checkpoint, dict) or not isinstance(
            checkpoint.get('state_dict'), dict):
        raise ValueError(f"{parent_path} is not a checkpoint with a "
                         "'state_dict' (as mmengine's runner saves them)")
    state_dict = {
        k: v
        for k, v in checkpoint['state_dict'].items()
        if not k.startswith(GATE_PREFIX)
    }
    state_dict.update({
        GATE_PREFIX + k: v.detach().cpu()
        for k, v in gate.state_dict().items()
    })
    checkpoint['state_dict'] = state_dict
    checkpoint.setdefault('meta', {})['exit_gate'] = meta
    _save_atomically(checkpoint, out_path)
    return meta
