# Copyright (c) OpenMMLab. All rights reserved.
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from projects.proscale.models.pixel_decoders import ProScalePixelDecoder

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', 'proscale', '*.py')))


def test_configs_found():
    names = {osp.basename(path) for path in CONFIGS}
    for backbone in ('r50', 'swin-t-p4-w7-224'):
        for stages in ('333', '114', '222', '111'):
            assert (f'mask2former_{backbone}_proscale-{stages}_8xb2-lsj-50e_'
                    'coco-panoptic.py') in names
    assert 'mask2former_r50_proscale-333_8xb2-lsj-50e_coco.py' in names


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.basename(path) for path in CONFIGS])
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['projects.proscale']
    stages = osp.basename(path).split('proscale-')[1][:3]
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    # mmdet detectors hold a panoptic_head, mmseg segmentors a decode_head.
    head = getattr(model, 'panoptic_head', None) or model.decode_head
    decoder = head.pixel_decoder
    assert type(decoder) is ProScalePixelDecoder
    assert decoder.num_layers_per_stage == tuple(int(s) for s in stages)
    assert decoder.pixel_embed == 'maxpool'
    assert decoder.trc.proj_type == 'linear'
    assert decoder.trc.layout == 'legacy'
    assert decoder.trc.temperature == 0.1
