# Copyright (c) The proscale Authors. All rights reserved.
"""Distributed runs: ``--launcher pytorch`` without CUDA, model wrappers."""
import datetime
from typing import Any, Dict

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import is_model_wrapper
from torch import nn

# Process-group backends that need CUDA; gloo replaces them on CPU.
CUDA_BACKENDS = ('nccl', )


def cpu_dist_cfg(dist_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Adapt an ``env_cfg.dist_cfg`` to a machine without CUDA.

    Args:
        dist_cfg (dict): ``env_cfg.dist_cfg`` of the config: ``backend``
            (mmengine's default: ``'nccl'``) and ``init_process_group``
            arguments such as ``timeout`` (in seconds).

    Returns:
        dict: A copy with ``backend='gloo'`` in place of a missing or
        CUDA-only (nccl) backend; another backend (e.g. ``'mpi'``) and the
        other arguments are kept.
    """
    dist_cfg = dict(dist_cfg)
    if dist_cfg.get('backend', 'nccl') in CUDA_BACKENDS:
        dist_cfg['backend'] = 'gloo'
    return dist_cfg


def init_cpu_distributed(cfg: Config) -> None:
    """Start the process group of a ``--launcher pytorch`` run without CUDA.

    On a CPU-only machine mmengine's pytorch launcher fails: it calls
    ``torch.cuda.set_device``, uses nccl by default and gives DDP the CUDA
    device ``LOCAL_RANK``. Called before the runner is built, this starts
    the process group itself (the runner then skips its own start) with
    :func:`cpu_dist_cfg` of ``env_cfg.dist_cfg``, and makes the model
    wrapper (``MMDistributedDataParallel`` unless ``model_wrapper_cfg`` says
    otherwise) run on CPU (``device_ids=None``). With CUDA, another launcher
    or an already started process group it does nothing.

    Args:
        cfg (Config): The config with ``launcher`` set, e.g. from a tool's
            ``--launcher``. ``env_cfg.dist_cfg`` (set to the backend used)
            and ``model_wrapper_cfg`` are updated in place.
    """
    if (cfg.get('launcher') != 'pytorch' or torch.cuda.is_available()
            or torch_dist.is_initialized()):
        return
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = cpu_dist_cfg(env_cfg.get('dist_cfg') or {})
    cfg.env_cfg = dict(env_cfg, dist_cfg=dist_cfg)
    kwargs = dict(dist_cfg)
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    torch_dist.init_process_group(**kwargs)
    wrapper = dict(
        cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the model inside a model wrapper (e.g. DDP), or the model.

    Args:
        model (nn.Module): A runner's model, wrapped or not.

    Returns:
        nn.Module: The wrapped model (``model.module``), or ``model``.
    """
    return model.module if is_model_wrapper(model) else model
