# Copyright (c) The proscale Authors. All rights reserved.
import os.path as osp

import pytest

from proscale.analysis.model_utils import (fixed_shape_batch,
                                           resolve_config_path)
from proscale.utils.cli import UserInputError


def test_resolve_package_config_path():
    path = resolve_config_path(
        'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py')
    assert osp.isfile(path)
    assert path.endswith(
        osp.join('mmdet', '.mim', 'configs', 'mask2former',
                 'mask2former_r50_8xb2-lsj-50e_coco-panoptic.py'))
    assert resolve_config_path('configs/a.py') == 'configs/a.py'
    with pytest.raises(UserInputError, match="'nopackage' is not installed"):
        resolve_config_path('nopackage::a.py')


def test_fixed_shape_batch(tiny_baseline):
    batch = fixed_shape_batch(tiny_baseline, (40, 72))
    image, = batch['inputs']
    sample, = batch['data_samples']
    assert image.shape == (3, 40, 72)
    assert sample.img_shape == sample.ori_shape == (40, 72)
    with pytest.raises(ValueError, match='positive'):
        fixed_shape_batch(tiny_baseline, (0, 72))
