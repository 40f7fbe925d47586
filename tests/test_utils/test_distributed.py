# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

from proscale.utils import (cpu_dist_cfg, init_cpu_distributed, unwrap_model)


def _config(launcher='pytorch', **dist_cfg):
    return Config(
        dict(
            launcher=launcher,
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dist_cfg),
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel',
                find_unused_parameters=True)))


@pytest.mark.parametrize('dist_cfg, backend', [
    (dict(backend='nccl', timeout=60), 'gloo'),
    (dict(), 'gloo'),
    (dict(backend='gloo'), 'gloo'),
    (dict(backend='mpi'), 'mpi'),
])
def test_cpu_dist_cfg_replaces_only_cuda_backends(dist_cfg, backend):
    original = dict(dist_cfg)
    assert cpu_dist_cfg(dist_cfg) == dict(dist_cfg, backend=backend)
    assert dist_cfg == original


@pytest.fixture
def single_rank_env(monkeypatch, free_port):
    """The environment torchrun gives the only rank of a CPU-only job."""
    for key, value in dict(
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(free_port),
            RANK='0',
            LOCAL_RANK='0',
            WORLD_SIZE='1').items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    yield
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def test_pytorch_launcher_without_cuda_starts_gloo(single_rank_env):
    cfg = _config(backend='nccl', timeout=60)
    init_cpu_distributed(cfg)
    assert torch_dist.is_initialized()
    assert torch_dist.get_backend() == 'gloo'
    assert cfg.env_cfg.dist_cfg == dict(backend='gloo', timeout=60)
    assert cfg.env_cfg.cudnn_benchmark is False
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel',
        find_unused_parameters=True,
        device_ids=None)
    # the wrapper the runner builds from it runs on CPU
    model = torch.nn.Linear(2, 2)
    wrapped = MMDistributedDataParallel(
        module=model, device_ids=cfg.model_wrapper_cfg.device_ids)
    assert unwrap_model(wrapped) is model
    assert unwrap_model(model) is model


@pytest.mark.parametrize('launcher, cuda', [('none', False),
                                            ('pytorch', True)])
def test_nothing_changes_without_launcher_or_with_cuda(single_rank_env,
                                                       monkeypatch, launcher,
                                                       cuda):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    cfg = _config(launcher, backend='nccl')
    before = cfg.to_dict()
    init_cpu_distributed(cfg)
    assert not torch_dist.is_initialized()
    assert cfg.to_dict() == before
