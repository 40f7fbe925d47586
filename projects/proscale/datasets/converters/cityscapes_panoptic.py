# Copyright (c) The proscale Authors. All rights reserved.
"""Convert Cityscapes ``gtFine`` annotations to COCO-panoptic files.

Two steps per split:

1. cityscapesscripts' own ``createPanopticImgs`` writes the official
   panoptic ground truth, ``gtFine/cityscapes_panoptic_{split}.json`` and
   ``gtFine/cityscapes_panoptic_{split}/*_gtFine_panoptic.png`` (Cityscapes
   label ids, the files the official evaluation reads).
2. Those files are rearranged into what mmdet's ``CocoPanopticDataset`` and
   ``CocoPanopticMetric`` read: ``{out_dir}/cityscapes_panoptic_{split}.json``
   with the categories in :class:`CityscapesPanopticDataset`'s order (things
   first) and the real image names, and ``{out_dir}/cityscapes_panoptic_
   {split}/{image}_leftImg8bit.png`` (the same PNGs, hard-linked where the
   file system allows, named after their image as mmdet expects).
"""
import glob
import json
import os
import os.path as osp
import shutil
from typing import Dict, Optional, Sequence, Tuple

from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
from mmengine.logging import print_log
from mmengine.utils import mkdir_or_exist

from ..cityscapes_panoptic import CityscapesPanopticDataset, cityscapes_city

IMAGE_SUFFIX = '_leftImg8bit.png'


def official_panoptic_files(data_root: str, split: str) -> Tuple[str, str]:
    """Return the official panoptic ground truth of a split.

    Args:
        data_root (str): The Cityscapes root (holding ``gtFine/``).
        split (str): ``'train'``, ``'val'`` or ``'test'``.

    Returns:
        tuple[str, str]: The JSON file and the folder of panoptic PNGs that
        cityscapesscripts' ``createPanopticImgs`` writes for the split.
    """
    name = osp.join(data_root, 'gtFine', f'cityscapes_panoptic_{split}')
    return f'{name}.json', name


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst`` (replacing it), copying if linking
    fails (e.g. across file systems)."""
    if osp.lexists(dst):
        os.remove(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _ordered_categories(official_categories: Sequence[dict],
                        json_file: str) -> list:
    """Return the official categories in the dataset's class order.

    Raises:
        ValueError: If a class is missing or its ``isthing`` flag does not
            match the dataset's thing classes.
    """
    metainfo = CityscapesPanopticDataset.METAINFO
    by_name = {category['name']: category for category in official_categories}
    categories = []
    for name in metainfo['classes']:
        if name not in by_name:
            raise ValueError(f"{json_file}: category '{name}' is missing; "
                             f'found {sorted(by_name)}')
        category = by_name[name]
        if bool(category['isthing']) != (name in metainfo['thing_classes']):
            raise ValueError(f"{json_file}: category '{name}' has isthing="
                             f"{category['isthing']}, expected "
                             f"{int(name in metainfo['thing_classes'])}")
        categories.append(category)
    return categories


def official_to_mmdet(json_file: str, png_dir: str, image_dir: str,
                      out_json: str, out_png_dir: str) -> int:
    """Rearrange official Cityscapes panoptic files for mmdet.

    Args:
        json_file (str): Official panoptic JSON (``createPanopticImgs``).
        png_dir (str): Its folder of ``*_gtFine_panoptic.png`` files.
        image_dir (str): The split's ``leftImg8bit/{split}`` folder; every
            image must exist in its city sub-folder.
        out_json (str): The mmdet annotation file to write.
        out_png_dir (str): The folder for the panoptic PNGs named after
            their images.

    Returns:
        int: The number of images converted.

    Raises:
        FileNotFoundError: If an image or a panoptic PNG is missing.
        ValueError: If the categories are not the 19 Cityscapes classes or
            an image id is not a Cityscapes name.
    """
    with open(json_file) as f:
        official = json.load(f)
    categories = _ordered_categories(official['categories'], json_file)
    mkdir_or_exist(out_png_dir)

    images = []
    for image in official['images']:
        file_name = image['id'] + IMAGE_SUFFIX
        image_path = osp.join(image_dir, cityscapes_city(file_name), file_name)
        if not osp.isfile(image_path):
            raise FileNotFoundError(
                f"{json_file}: image '{image['id']}' has no "
                f'{image_path}')
        images.append(dict(image, file_name=file_name))

    annotations = []
    for annotation in official['annotations']:
        file_name = annotation['image_id'] + IMAGE_SUFFIX
        png_path = osp.join(png_dir, annotation['file_name'])
        if not osp.isfile(png_path):
            raise FileNotFoundError(f'{json_file}: panoptic PNG {png_path} '
                                    'does not exist')
        _link_or_copy(png_path, osp.join(out_png_dir, file_name))
        annotations.append(dict(annotation, file_name=file_name))

    with open(out_json, 'w') as f:
        json.dump(
            dict(
                images=images, annotations=annotations, categories=categories),
            f)
    return len(images)


def convert_cityscapes_panoptic(
        data_root: str,
        splits: Sequence[str] = ('train', 'val'),
        out_dir: Optional[str] = None) -> Dict[str, Tuple[str, str]]:
    """Convert Cityscapes fine annotations to COCO-panoptic files.

    Expects the original layout: ``{data_root}/leftImg8bit/{split}/{city}/
    *_leftImg8bit.png`` and ``{data_root}/gtFine/{split}/{city}/
    *_gtFine_instanceIds.png``.

    Args:
        data_root (str): The Cityscapes root folder.
        splits (Sequence[str]): Splits to convert.
            Defaults to ``('train', 'val')``.
        out_dir (str, optional): Where to write the mmdet files. Defaults
            to ``{data_root}/annotations``.

    Returns:
        dict[str, tuple[str, str]]: For each split, the mmdet annotation
        file and its folder of panoptic PNGs.

    Raises:
        FileNotFoundError: If a split has no ``*_gtFine_instanceIds.png``
            annotations or an image is missing.
    """
    out_dir = out_dir or osp.join(data_root, 'annotations')
    gt_dir = osp.join(data_root, 'gtFine')
    outputs = {}
    for split in splits:
        pattern = osp.join(gt_dir, split, '*', '*_gtFine_instanceIds.png')
        if not glob.glob(pattern):
            raise FileNotFoundError(
                f'no Cityscapes annotations match {pattern} (expected the '
                'gtFine_trainvaltest layout; see docs/datasets.md)')
        mkdir_or_exist(out_dir)
        convert2panoptic(
            cityscapesPath=gt_dir,
            outputFolder=gt_dir,
            useTrainId=False,
            setNames=[split])
        json_file, png_dir = official_panoptic_files(data_root, split)
        out_json = osp.join(out_dir, f'cityscapes_panoptic_{split}.json')
        out_png_dir = osp.join(out_dir, f'cityscapes_panoptic_{split}')
        num_images = official_to_mmdet(
            json_file, png_dir, osp.join(data_root, 'leftImg8bit', split),
            out_json, out_png_dir)
        print_log(
            f'Cityscapes {split}: {num_images} images -> {out_json}, '
            f'{out_png_dir}/ (official: {json_file})',
            logger='current')
        outputs[split] = (out_json, out_png_dir)
    return outputs
