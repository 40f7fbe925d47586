# Copyright (c) The proscale Authors. All rights reserved.
"""detectron2's exact test-time input (``*_d2-test`` configs) against a
reimplementation of detectron2's recipe, and against mmdet's default."""
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from PIL import Image

from proscale.analysis.pipeline_comparison import (compare_pipelines,
                                                   image_pipeline,
                                                   network_input)
from proscale.utils.cli import load_config

CONFIG = ('proscale::proscale/'
          'mask2former_r50_proscale-333_8xb2-lsj-50e_')
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def detectron2_shape(h: int, w: int, short: int = 800,
                     max_size: int = 1333) -> tuple:
    """detectron2's ResizeShortestEdge.get_output_shape."""
    scale = short / min(h, w)
    new_h, new_w = (short, scale * w) if h < w else (scale * h, short)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def detectron2_input(path: str) -> torch.Tensor:
    """PIL decode, PIL bilinear resize on uint8, normalise, pad to 32."""
    image = Image.open(path).convert('RGB')
    new_h, new_w = detectron2_shape(image.height, image.width)
    resized = np.asarray(image.resize((new_w, new_h), Image.BILINEAR))
    tensor = (torch.from_numpy(resized.copy()).permute(2, 0, 1).float() -
              MEAN) / STD
    pad_h, pad_w = -new_h % 32, -new_w % 32
    return torch.nn.functional.pad(tensor, (0, pad_w, 0, pad_h))[None]


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    paths = []
    # 176 x 352: mmcv rounds the long-edge-limited size to 667 x 1333,
    # detectron2 to 666 x 1333
    for h, w, ext in ((61, 97, 'png'), (176, 352, 'jpg')):
        ramp = np.linspace(0, 255, h * w * 3).reshape(h, w, 3)
        noise = rng.integers(0, 40, (h, w, 3))
        image = np.clip(ramp + noise, 0, 255).astype(np.uint8)
        path = folder / f'img_{h}x{w}.{ext}'
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


def test_detectron2_pipeline_is_exact(images):
    cfg = load_config(CONFIG + 'coco-panoptic_d2-test.py')
    pipeline = image_pipeline(cfg)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    for path in images:
        ours, shape = network_input(pipeline, preprocessor, path)
        reference = detectron2_input(path)
        assert ours.shape == reference.shape
        assert shape == detectron2_shape(*Image.open(path).size[::-1])
        assert torch.equal(ours, reference), path


def test_default_pipeline_differs(images):
    rows = compare_pipelines(
        load_config(CONFIG + 'coco-panoptic.py'),
        load_config(CONFIG + 'coco-panoptic_d2-test.py'), images)
    assert rows[0]['shape_a'] == rows[0]['shape_b'] == (800, 1272)
    assert 0 < rows[0]['max_abs_diff'] < 0.1
    assert (rows[1]['shape_a'], rows[1]['shape_b']) == ((667, 1333),
                                                        (666, 1333))
    assert 'max_abs_diff' not in rows[1]
