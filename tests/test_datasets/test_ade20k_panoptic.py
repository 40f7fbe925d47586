# Copyright (c) The proscale Authors. All rights reserved.
"""ADE20K panoptic: conversion of the raw layout and loading with mmdet.

The tests write a tiny ``ADEChallengeData2016`` (``images/``, semantic
``annotations/`` and ``annotations_instance/`` of both splits), convert it
with the project's CLI (mmdet's converter plus box correction) and load it
with mmdet's ``ADE20KPanopticDataset`` through the project's config.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.datasets import ADE20KPanopticDataset
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import DATASETS, METRICS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from PIL import Image

from proscale.datasets.converters import segment_bbox

REPO = Path(__file__).resolve().parents[2]
CONVERTER = 'tools/dataset_converters/ade20k_panoptic.py'
CONFIG = (
    REPO / 'configs/mask2former/mask2former_r50_8xb2-160k_ade20k-panoptic.py')
METAINFO = ADE20KPanopticDataset.METAINFO
HEIGHT, WIDTH = 48, 64
# 1-based ids of the raw annotations: semantic (150 classes) and instance
# (100 thing classes, in the order of the panoptic thing classes).
WALL, FLOOR, BED, PERSON = 1, 4, 8, 13
BED_INSTANCE, PERSON_INSTANCE = 1, 4


def write_ade20k(root: Path, seed: int = 0) -> None:
    """Write a tiny ADEChallengeData2016 with two things per image."""
    rng = np.random.default_rng(seed)
    for split, prefix, num_images in (('training', 'train', 2), ('validation',
                                                                 'val', 1)):
        for folder in ('images', 'annotations', 'annotations_instance'):
            (root / folder / split).mkdir(parents=True)
        for index in range(1, num_images + 1):
            name = f'ADE_{prefix}_{index:08d}'
            semantic = np.full((HEIGHT, WIDTH), WALL, dtype=np.uint8)
            semantic[30:] = FLOOR
            semantic[:2, :2] = 0  # unlabeled
            instance = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
            x = int(rng.integers(30, 50))
            for (y0, y1, x0,
                 x1), sem, category, instance_id in (((20, 40, 5, 25), BED,
                                                      BED_INSTANCE, 1),
                                                     ((10, 30, x,
                                                       x + 10), PERSON,
                                                      PERSON_INSTANCE, 2)):
                semantic[y0:y1, x0:x1] = sem
                instance[y0:y1, x0:x1, 0] = category
                instance[y0:y1, x0:x1, 1] = instance_id
            image = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / 'images' / split /
                                        f'{name}.jpg')
            Image.fromarray(semantic).save(root / 'annotations' / split /
                                           f'{name}.png')
            Image.fromarray(instance).save(root / 'annotations_instance' /
                                           split / f'{name}.png')


@pytest.fixture(scope='module')
def ade20k_root(tmp_path_factory, run_main) -> Path:
    root = tmp_path_factory.mktemp('ADEChallengeData2016')
    write_ade20k(root)
    run_main(CONVERTER, root)
    return root


def _segment_ids(png: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(png)).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def test_conversion_boxes(ade20k_root):
    """Every box, things included, is the box of the segment's mask."""
    panoptic = json.loads(
        (ade20k_root / 'ade20k_panoptic_train.json').read_text())
    num_things = 0
    for annotation in panoptic['annotations']:
        ids = _segment_ids(ade20k_root / 'ade20k_panoptic_train' /
                           annotation['file_name'])
        for segment in annotation['segments_info']:
            assert segment['bbox'] == segment_bbox(ids == segment['id'])
            num_things += segment['category_id'] < len(
                METAINFO['thing_classes'])
    assert num_things == 4


def test_dataset_with_config_pipelines(ade20k_root):
    """The config's datasets load the converted files; things survive."""
    register_all_modules()
    cfg = Config.fromfile(CONFIG)
    head = cfg.model.panoptic_head
    assert head.num_things_classes == len(METAINFO['thing_classes'])
    assert head.num_stuff_classes == len(METAINFO['stuff_classes'])
    assert len(head.loss_cls.class_weight) == len(METAINFO['classes']) + 1
    train = cfg.train_dataloader.dataset
    train.data_root = str(ade20k_root)
    for transform in train.pipeline:
        if transform.type == 'RandomChoiceResize':
            transform.scales = [(128, 48), (128, 64)]
        elif transform.type == 'RandomCrop':
            transform.crop_size = (32, 32)
    dataset = DATASETS.build(train)
    assert len(dataset) == 2
    info = dataset.get_data_info(0)
    assert info['img_path'].endswith('images/training/ADE_train_00000001.jpg')
    categories = sorted(s['category'] for s in info['segments_info'])
    classes = METAINFO['classes']
    assert categories == sorted(
        classes.index(name) for name in ('bed', 'person', 'wall', 'floor'))
    assert len(info['instances']) == 2
    sample = dataset[0]['data_samples']
    assert sample.gt_sem_seg.sem_seg.shape[-2:] == (32, 32)
    assert sample.img_shape == (32, 32)

    val = cfg.val_dataloader.dataset
    val.data_root = str(ade20k_root)
    val.pipeline[1].scale = (256, 64)  # the shortest side to 64, as to 640
    assert DATASETS.build(val)[0]['inputs'].shape[-2:] == (64, 85)


def test_evaluator_on_ground_truth(ade20k_root):
    """The config's CocoPanopticMetric scores the ground truth PQ 100."""
    register_all_modules()
    cfg = Config.fromfile(CONFIG)
    annotation_file = ade20k_root / 'ade20k_panoptic_val.json'
    annotation = json.loads(annotation_file.read_text())['annotations'][0]
    ids = _segment_ids(ade20k_root / 'ade20k_panoptic_val' /
                       annotation['file_name'])
    pan = np.full(ids.shape, len(METAINFO['classes']), dtype=np.int64)
    for instance, segment in enumerate(annotation['segments_info'], 1):
        pan[ids == segment['id']] = (
            segment['category_id'] + instance * INSTANCE_OFFSET)
    metric = METRICS.build(
        dict(
            cfg.val_evaluator,
            ann_file=str(annotation_file),
            seg_prefix=str(ade20k_root / 'ade20k_panoptic_val'),
            nproc=1))
    metric.dataset_meta = METAINFO
    metric.process({}, [
        dict(
            img_id=annotation['image_id'],
            img_path=str(ade20k_root / 'images/validation' /
                         f"{annotation['image_id']}.jpg"),
            ori_shape=(HEIGHT, WIDTH),
            pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pan)[None]))
    ])
    assert metric.evaluate(1)['coco_panoptic/PQ'] == pytest.approx(100)


def test_missing_folder(tmp_path, capsys, run_main):
    (tmp_path / 'images' / 'training').mkdir(parents=True)
    with pytest.raises(SystemExit, match='2'):
        run_main(CONVERTER, tmp_path)
    assert 'images/validation does not exist' in capsys.readouterr().err
