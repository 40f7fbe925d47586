# Copyright (c) The proscale Authors. All rights reserved.
"""Every config under ``configs/`` loads and its model builds (no weights);
the PRO-SCALE ones have the decoder their names promise."""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from proscale.models.layers import ProScaleDetrTransformerEncoder
from proscale.models.pixel_decoders import ProScalePixelDecoder

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    str(path.relative_to(REPO_ROOT))
    for path in (REPO_ROOT / 'configs').rglob('*.py')
    if '_base_' not in path.parts)
# 'proscale-333' in a config name: layers per stage of the PRO-SCALE decoder
PROSCALE_STAGES = re.compile(r'proscale-(\d)(\d)(\d)_')
# 'proscale-1122': layers per stage of a DETR's 4-scale PRO-SCALE encoder
PROSCALE_DETR_STAGES = re.compile(r'proscale-(\d)(\d)(\d)(\d)_')


def test_configs_found():
    names = {Path(config).name for config in CONFIGS}
    assert 'mask2former_r18_1xb4-tiny_synthetic-panoptic.py' in names
    for backbone in ('r50', 'swin-t-p4-w7-224'):
        for stages in ('333', '114', '222', '111'):
            assert (f'mask2former_{backbone}_proscale-{stages}_8xb2-lsj-50e_'
                    'coco-panoptic.py') in names
    assert 'mask2former_r50_proscale-333_8xb2-lsj-50e_coco.py' in names
    for name in ('dino-4scale_r50_8xb2-12e_coco.py',
                 'dino-4scale_r50_proscale-1122_8xb2-12e_coco.py',
                 'dino-4scale_swin-t-p4-w7-224_proscale-1122_8xb2-12e_coco.py',
                 'deformable-detr-refine-twostage_r50_proscale-1122_16xb2-'
                 '50e_coco.py',
                 'dino-4scale_r18_proscale-1122_1xb4-tiny_synthetic-'
                 'detection.py',
                 'eco-dino-gated_r18_1xb4-tiny_synthetic-detection.py'):
        assert name in names


def _check_proscale_decoder(model: torch.nn.Module, stages: tuple) -> None:
    """The released PRO-SCALE settings: LPE, legacy linear TRC, tau 0.1."""
    # mmdet detectors hold a panoptic_head, mmseg segmentors a decode_head.
    head = getattr(model, 'panoptic_head', None) or model.decode_head
    decoder = head.pixel_decoder
    assert type(decoder) is ProScalePixelDecoder
    assert decoder.num_layers_per_stage == stages
    assert decoder.pixel_embed == 'maxpool'
    assert decoder.trc.proj_type == 'linear'
    assert decoder.trc.layout == 'legacy'
    assert decoder.trc.temperature == 0.1


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_model(config):
    cfg = Config.fromfile(str(REPO_ROOT / config))
    for key in ('model', 'train_dataloader', 'val_evaluator', 'train_cfg'):
        assert key in cfg, f'{config} has no {key!r}'
    assert cfg.custom_imports.imports == ['proscale']
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
    stages = PROSCALE_STAGES.search(Path(config).name)
    if stages:
        _check_proscale_decoder(model, tuple(map(int, stages.groups())))
    detr_stages = PROSCALE_DETR_STAGES.search(Path(config).name)
    if detr_stages:
        assert type(model.encoder) is ProScaleDetrTransformerEncoder
        assert model.encoder.num_layers_per_stage == tuple(
            map(int, detr_stages.groups()))
        assert model.encoder.trc.layout == 'spatial'


# The panoptic score threshold: 0.25 for the tiny synthetic models (trained
# for a few hundred iterations), mmdet's 0.8 for the full-size ones.
TINY_OBJECT_MASK_THR = 0.25
MMDET_OBJECT_MASK_THR = 0.8


@pytest.mark.parametrize('config', CONFIGS)
def test_panoptic_score_threshold(config):
    test_cfg = Config.fromfile(str(REPO_ROOT / config)).model.get('test_cfg')
    if not test_cfg or 'object_mask_thr' not in test_cfg:
        pytest.skip(f'{config} has no panoptic score threshold')
    expected = (
        TINY_OBJECT_MASK_THR if 'tiny_synthetic' in config else
        MMDET_OBJECT_MASK_THR)
    assert test_cfg.object_mask_thr == expected
