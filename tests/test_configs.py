"""Every config under ``configs/`` loads and its model builds (no weights)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    str(path.relative_to(REPO_ROOT))
    for path in (REPO_ROOT / 'configs').rglob('*.py')
    if '_base_' not in path.parts)


def test_configs_found():
    assert 'configs/mask2former/mask2former_r18_1xb4-tiny_synthetic-' \
        'panoptic.py' in CONFIGS


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_model(config):
    cfg = Config.fromfile(str(REPO_ROOT / config))
    for key in ('model', 'train_dataloader', 'val_evaluator', 'train_cfg'):
        assert key in cfg, f'{config} has no {key!r}'
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    # Building never loads weights (that is init_weights' job), so the
    # pretrained checkpoints named by the COCO configs are not needed.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = MODELS.build(cfg.model)
    finally:
        torch.set_num_threads(threads)
    assert sum(p.numel() for p in model.parameters()) > 0
