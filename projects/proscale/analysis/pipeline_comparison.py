# Copyright (c) The proscale Authors. All rights reserved.
"""Compare the network inputs two test pipelines give for the same images.

Used to check how far mmdet's default test-time resize (cv2 decode and
bilinear resize, mmcv's size rounding) is from detectron2's (PIL decode,
PIL bilinear on uint8, detectron2's rounding), which the authors' released
weights were evaluated with.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from mmcv.transforms import Compose
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

# Annotation loading needs annotation files; the network input does not.
_ANNOTATION_TRANSFORMS = ('LoadAnnotations', 'LoadPanopticAnnotations')


def image_pipeline(cfg: Config) -> Compose:
    """The test pipeline of a config without its annotation loading.

    Args:
        cfg (Config): A detection config with ``test_dataloader``.

    Returns:
        Compose: The transforms from an ``img_path`` to packed inputs.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return Compose([
        t for t in cfg.test_dataloader.dataset.pipeline
        if t['type'] not in _ANNOTATION_TRANSFORMS
    ])


@torch.no_grad()
def network_input(pipeline: Compose, preprocessor: torch.nn.Module,
                  image_path: str) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """The normalised, padded tensor a model runs on for one image.

    Args:
        pipeline (Compose): See :func:`image_pipeline`.
        preprocessor (nn.Module): The model's data preprocessor.
        image_path (str): The image file.

    Returns:
        tuple[Tensor, tuple[int, int]]: The input, shape (1, 3, H', W')
        (padded), and the resized image's (H, W).
    """
    packed = pipeline(dict(img_path=image_path, img_id=0))
    data = dict(
        inputs=[packed['inputs']], data_samples=[packed['data_samples']])
    return (preprocessor(data, False)['inputs'],
            tuple(packed['data_samples'].img_shape))


def compare_pipelines(cfg_a: Config, cfg_b: Config,
                      image_paths: Sequence[str]) -> List[Dict[str, object]]:
    """Run images through two configs' test pipelines and compare.

    Both inputs are normalised and padded by ``cfg_a``'s data preprocessor.

    Args:
        cfg_a (Config): The first config.
        cfg_b (Config): The second config.
        image_paths (Sequence[str]): The images.

    Returns:
        list[dict]: Per image: ``image``, ``shape_a`` and ``shape_b`` (the
        resized (H, W)), and, when the shapes agree, ``max_abs_diff`` of the
        normalised inputs and ``fraction_different`` (of their values).
    """
    pipeline_a, pipeline_b = image_pipeline(cfg_a), image_pipeline(cfg_b)
    preprocessor = MODELS.build(cfg_a.model.data_preprocessor)
    rows = []
    for path in image_paths:
        input_a, shape_a = network_input(pipeline_a, preprocessor, path)
        input_b, shape_b = network_input(pipeline_b, preprocessor, path)
        row: Dict[str, object] = dict(
            image=path, shape_a=shape_a, shape_b=shape_b)
        if shape_a == shape_b:
            diff = (input_a - input_b).abs()
            row.update(
                max_abs_diff=diff.max().item(),
                fraction_different=(diff > 0).float().mean().item())
        rows.append(row)
    return rows
