# Copyright (c) The proscale Authors. All rights reserved.
"""Convert ADE20K (SceneParsing) annotations to COCO-panoptic files.

Runs mmdet's own converter (``tools/dataset_converters/ade20k2coco.py``,
shipped in the mmdet package) and then recomputes every segment's box from
its mask: mmdet 3.3's converter computes the box of a thing segment from a
stale ``x`` (the left edge of the previous segment), so boxes come out with
wrong or zero widths, and ``CocoPanopticDataset`` silently drops segments
whose box is narrower than one pixel.
"""
import importlib.util
import json
import os.path as osp
from types import ModuleType
from typing import Dict, Tuple

import mmdet
import numpy as np
from mmengine.logging import print_log
from panopticapi.utils import rgb2id
from PIL import Image

# mmdet's split names and the ADEChallengeData2016 folder of each.
ADE20K_SPLITS = {'train': 'training', 'val': 'validation'}
ADE20K_INPUT_DIRS = ('images', 'annotations', 'annotations_instance')


def load_mmdet_ade20k2coco() -> ModuleType:
    """Load ``ade20k2coco.py`` from the installed mmdet package.

    Returns:
        ModuleType: The converter module.

    Raises:
        FileNotFoundError: If the installed mmdet does not ship its tools.
    """
    path = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'tools', 'dataset_converters',
        'ade20k2coco.py')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"mmdet's ADE20K converter {path} does not exist (install mmdet "
            'from a wheel or take the script from its repository)')
    spec = importlib.util.spec_from_file_location('mmdet_ade20k2coco', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def segment_bbox(mask: np.ndarray) -> list:
    """Return the ``[x, y, w, h]`` box of a non-empty boolean mask."""
    ys, xs = np.nonzero(mask)
    x, y = int(xs.min()), int(ys.min())
    return [x, y, int(xs.max()) - x + 1, int(ys.max()) - y + 1]


def recompute_segment_bboxes(json_file: str, png_dir: str) -> int:
    """Recompute the box of every segment of a COCO-panoptic file in place.

    Args:
        json_file (str): The panoptic annotation file.
        png_dir (str): Its folder of panoptic PNGs.

    Returns:
        int: The number of boxes that changed.

    Raises:
        FileNotFoundError: If a PNG is missing.
        ValueError: If a segment has no pixel in its PNG.
    """
    with open(json_file) as f:
        panoptic = json.load(f)
    changed = 0
    for annotation in panoptic['annotations']:
        png_path = osp.join(png_dir, annotation['file_name'])
        if not osp.isfile(png_path):
            raise FileNotFoundError(f'{json_file}: panoptic PNG {png_path} '
                                    'does not exist')
        segment_ids = rgb2id(np.asarray(Image.open(png_path).convert('RGB')))
        for segment in annotation['segments_info']:
            mask = segment_ids == segment['id']
            if not mask.any():
                raise ValueError(f"{png_path}: segment {segment['id']} of "
                                 f'{json_file} has no pixel')
            bbox = segment_bbox(mask)
            if bbox != segment['bbox']:
                changed += 1
                segment['bbox'] = bbox
    with open(json_file, 'w') as f:
        json.dump(panoptic, f)
    return changed


def convert_ade20k_panoptic(data_root: str) -> Dict[str, Tuple[str, str]]:
    """Convert ADEChallengeData2016 to COCO-panoptic files for mmdet.

    Expects ``{data_root}/images/{training,validation}/*.jpg``, the semantic
    ``annotations/`` and the instance ``annotations_instance/`` PNGs of the
    same splits, and writes ``{data_root}/ade20k_panoptic_{train,val}.json``
    with the PNG folders ``{data_root}/ade20k_panoptic_{train,val}/`` (the
    layout of mmdet's ``ADE20KPanopticDataset`` configs).

    Args:
        data_root (str): The ``ADEChallengeData2016`` folder.

    Returns:
        dict[str, tuple[str, str]]: For ``'train'`` and ``'val'``, the
        annotation file and its folder of panoptic PNGs.

    Raises:
        FileNotFoundError: If an input folder is missing.
    """
    for input_dir in ADE20K_INPUT_DIRS:
        for split_dir in ADE20K_SPLITS.values():
            path = osp.join(data_root, input_dir, split_dir)
            if not osp.isdir(path):
                raise FileNotFoundError(
                    f'ADE20K folder {path} does not exist (see '
                    'docs/datasets.md for the downloads)')
    load_mmdet_ade20k2coco().prepare_panoptic_annotations(data_root)
    outputs = {}
    for split in ADE20K_SPLITS:
        json_file = osp.join(data_root, f'ade20k_panoptic_{split}.json')
        png_dir = osp.join(data_root, f'ade20k_panoptic_{split}')
        changed = recompute_segment_bboxes(json_file, png_dir)
        print_log(
            f'ADE20K {split}: {json_file}, {png_dir}/ ({changed} segment '
            'boxes corrected)',
            logger='current')
        outputs[split] = (json_file, png_dir)
    return outputs
