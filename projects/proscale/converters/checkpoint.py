# Copyright (c) The proscale Authors. All rights reserved.
"""Read a detectron2 checkpoint, convert it, check it against a config and
write it as an mmengine checkpoint.

:func:`convert_checkpoint` is the whole pipeline of
``tools/model_converters/detectron2_to_proscale.py``. Nothing is written
unless the converted weights load with ``strict=True`` into the model of the
target config.
"""
import hashlib
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import Tensor, nn

from ..utils.atomic_file import atomic_open
from ..utils.cli import load_config
from ..utils.package_files import resolve_config_path
from .detectron2_arch import ConversionError, Detectron2Arch, recognize
from .detectron2_mask2former import convert_state_dict

CONVERTER_VERSION = '1.0'
# How many offending keys an error message lists before counting the rest.
_MAX_LISTED = 8
_CONFIG_BACKBONES = {'r50': 'r50', 'swin-t': 'swin-t-p4-w7-224'}
_CONFIG_SCHEDULES = {'COCO': 'lsj-50e_coco', 'Cityscapes': '90k_cityscapes'}


def sha256sum(path: str) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _to_tensor(key: str, value: Any, path: str) -> Tensor:
    """A state dict value as a tensor (``.pkl`` files hold numpy arrays)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Tensor):
        return value
    raise ConversionError(f'{path}: {key!r} is a {type(value).__name__}, not '
                          'a tensor or numpy array')


def load_detectron2_state_dict(
        path: str, trust_pickle: bool = False) -> 'OrderedDict[str, Tensor]':
    """Read the state dict of a detectron2 checkpoint.

    ``.pkl`` files (Mask2Former's model zoo) are plain pickles with numpy
    arrays, read as detectron2 does (``pickle`` with ``encoding='latin1'``,
    so only read files from a source you trust); anything else is read with
    ``torch.load(weights_only=True)``. The state dict is the ``model`` entry
    when there is one (trainer and optimizer entries are ignored), else the
    file's dict itself.

    Args:
        path (str): The checkpoint file.
        trust_pickle (bool): Read a ``.pth`` that holds objects other than
            tensors and plain containers (e.g. a trainer's state) with
            ``weights_only=False``, which can run code from the file.
            Defaults to False.

    Returns:
        OrderedDict[str, Tensor]: The detectron2 state dict.

    Raises:
        ConversionError: If the file cannot be read or holds no state dict.
    """
    if not osp.isfile(path):
        raise ConversionError(f'{path}: no such file')
    try:
        if path.endswith('.pkl'):
            with open(path, 'rb') as f:
                ckpt = pickle.load(f, encoding='latin1')
        else:
            ckpt = torch.load(
                path, map_location='cpu', weights_only=not trust_pickle)
    except Exception as error:  # torch and pickle raise many types
        if 'Unsupported global' in str(error):
            raise ConversionError(
                f'{path}: holds objects other than tensors (training '
                'state?) that a safe load refuses; re-save its "model" dict, '
                'or pass --trust-pickle if you trust the file') from None
        reason = str(error).strip().split('. ')[0].splitlines()
        raise ConversionError(
            f'{path}: not a readable checkpoint (truncated or corrupt?): '
            f'{type(error).__name__}: {reason[0] if reason else ""}') from None
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get('model'), Mapping):
        ckpt = ckpt['model']
    if not isinstance(ckpt, Mapping) or not ckpt:
        raise ConversionError(f'{path}: holds no state dict (a dict of '
                              'tensors, or one under "model")')
    return OrderedDict(
        (key, _to_tensor(key, value, path)) for key, value in ckpt.items())


def default_config(arch: Detectron2Arch) -> str:
    """This project's config for a recognised released model.

    Args:
        arch (Detectron2Arch): The recognised model.

    Returns:
        str: A ``proscale::`` config path.

    Raises:
        ConversionError: If this project has no config for the model.
    """
    backbone = _CONFIG_BACKBONES.get(arch.backbone_name)
    schedule = _CONFIG_SCHEDULES.get(arch.dataset)
    name = None
    if backbone and schedule:
        suffix = f'{backbone}_%s8xb2-{schedule}-panoptic.py'
        if arch.model_type == 'PRO-SCALE':
            split = ''.join(str(n) for n in arch.num_layers_per_stage)
            name = 'proscale/mask2former_' + suffix % f'proscale-{split}_'
        elif arch.model_type == 'ECO-M2F':
            name = 'eco_m2f/eco-m2f-gated_' + suffix % ''
        else:
            name = 'mask2former/mask2former_' + suffix % ''
    path = None if name is None else 'proscale::' + name
    if path is None or not osp.isfile(resolve_config_path(path)):
        raise ConversionError(
            f'no config of this project for {arch.describe()}; pass --config')
    return path


def _listed(items: Sequence[str]) -> str:
    shown = ', '.join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f' (+{more} more)' if more > 0 else '')


def check_strict(model: nn.Module, state_dict: Mapping[str, Tensor],
                 leftover: Sequence[str] = ()) -> None:
    """Check that a state dict loads strictly into a model, and load it.

    Args:
        model (nn.Module): The target model.
        state_dict (Mapping[str, Tensor]): The converted weights.
        leftover (Sequence[str]): Source keys the conversion could not
            place, reported with the rest.

    Raises:
        ConversionError: One message listing the source keys without a
            place, the model's keys the weights lack, the keys the model
            does not have and the shape mismatches.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = []
    if leftover:
        problems.append(f'{len(leftover)} source key(s) with no place in the '
                        f'converted model: {_listed(list(leftover))}')
    missing = [k for k in expected if k not in state_dict]
    if missing:
        problems.append(f'{len(missing)} key(s) of the model missing from '
                        f'the converted weights: {_listed(missing)}')
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        problems.append(f'{len(unexpected)} converted key(s) not in the '
                        f'model: {_listed(unexpected)}')
    mismatched = [
        f'{k} {tuple(v.shape)} vs {expected[k]}'
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatch(es) (converted vs '
                        f'model): {_listed(mismatched)}')
    if problems:
        raise ConversionError('; '.join(problems))
    model.load_state_dict(state_dict, strict=True)


def build_model(cfg: Config) -> nn.Module:
    """Build the (uninitialised) model of a config on the CPU."""
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(cfg.model)


def convert_checkpoint(
        src: str,
        dst: str,
        config: Optional[str] = None,
        cfg_options: Optional[Dict[str, Any]] = None,
        class_order: Optional[str] = None,
        gate_exits: Optional[Sequence[int]] = None,
        trust_pickle: bool = False
) -> Tuple[Detectron2Arch, str, Dict[str, Any]]:
    """Convert a detectron2 checkpoint into a checked mmengine checkpoint.

    Args:
        src (str): The detectron2 checkpoint (``.pth`` or ``.pkl``).
        dst (str): The mmengine checkpoint to write (atomically).
        config (str, optional): The config the weights are for; None picks
            this project's config of the recognised model
            (:func:`default_config`).
        cfg_options (dict, optional): Overrides of the config.
        class_order (str, optional): Classifier row order override, see
            :func:`~proscale.converters.recognize`.
        gate_exits (Sequence[int], optional): Gate exits override, see
            :func:`~proscale.converters.recognize`.
        trust_pickle (bool): See :func:`load_detectron2_state_dict`.

    Returns:
        tuple: The recognised model, the config used, and the ``meta``
        written with the weights.

    Raises:
        ConversionError: If the file cannot be read, the model is not
            recognised, or the converted weights do not load strictly into
            the config's model; ``dst`` is not written then.
    """
    state_dict = load_detectron2_state_dict(src, trust_pickle)
    arch = recognize({k: v.shape for k, v in state_dict.items()},
                     class_order=class_order,
                     gate_exits=gate_exits)
    config = config or default_config(arch)
    new_state_dict, leftover = convert_state_dict(state_dict, arch)
    model = build_model(load_config(config, cfg_options))
    try:
        check_strict(model, new_state_dict, leftover)
    except ConversionError as error:
        raise ConversionError(f'{src} ({arch.describe()}) does not fit the '
                              f'model of {config}: {error}') from None
    meta = dict(
        source=osp.abspath(src),
        sha256=sha256sum(src),
        converter_version=CONVERTER_VERSION,
        config=config,
        source_model=arch.describe())
    with atomic_open(dst, 'wb') as f:
        torch.save(dict(state_dict=new_state_dict, meta=meta), f)
    return arch, config, meta
