# Copyright (c) The proscale Authors. All rights reserved.
"""Cityscapes panoptic: conversion, loading, metrics and a short training.

The tests write a tiny dataset in the original Cityscapes layout
(``leftImg8bit/{split}/{city}/*_leftImg8bit.png``, ``gtFine/{split}/{city}/
*_gtFine_instanceIds.png`` and ``*_gtFine_labelIds.png``) and convert it with
the project's CLI.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from mmdet.evaluation import CocoPanopticMetric
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import DATASETS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

from proscale.datasets import (CityscapesPanopticDataset, cityscapes_city)
from proscale.datasets.converters import official_to_mmdet
from proscale.evaluation.metrics import CityscapesPanopticMetric

REPO = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH = 64, 128
SPLITS = {
    'train':
    ['aachen_000000_000019', 'aachen_000001_000019', 'bochum_000000_000313'],
    'val': ['frankfurt_000000_000294', 'lindau_000000_000019'],
}
METAINFO = CityscapesPanopticDataset.METAINFO
CITYSCAPES_CONFIG = (
    REPO /
    'configs/mask2former/mask2former_r50_8xb2-90k_cityscapes-panoptic.py')
CONVERTER = 'tools/dataset_converters/cityscapes_panoptic.py'
TINY_CONFIG = (
    REPO /
    'configs/mask2former/mask2former_r18_1xb4-tiny_synthetic-panoptic.py')


def _instance_ids(rng: np.random.Generator) -> np.ndarray:
    """A random street scene as a ``*_gtFine_instanceIds.png`` map."""
    ids = np.full((HEIGHT, WIDTH), 7, dtype=np.uint16)  # road
    horizon = int(rng.integers(16, 28))
    ids[:horizon // 2] = 23  # sky
    ids[horizon // 2:horizon] = 11  # building
    ids[horizon:, :6] = 8  # sidewalk
    ids[-4:, 100:] = 0  # unlabeled (void)
    ids[2:6, 60:64] = 19  # traffic light
    for instance, label in enumerate((26, 26, 24, 33), start=1):
        y, x = int(rng.integers(horizon, HEIGHT - 12)), int(
            rng.integers(8, WIDTH - 24))
        ids[y:y + 12, x:x + 20] = label * 1000 + instance
    ids[HEIGHT - 8:HEIGHT - 4, 104:116] = 24  # a crowd of persons
    return ids


def write_cityscapes(root: Path, seed: int = 0) -> None:
    """Write a tiny dataset in the original Cityscapes layout."""
    rng = np.random.default_rng(seed)
    for split, names in SPLITS.items():
        for name in names:
            city = cityscapes_city(f'{name}_leftImg8bit.png')
            image_dir = root / 'leftImg8bit' / split / city
            gt_dir = root / 'gtFine' / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            ids = _instance_ids(rng)
            palette = {label.id: label.color for label in cs_labels}
            label_ids = np.where(ids >= 1000, ids // 1000, ids)
            image = np.array([palette[i] for i in label_ids.ravel()],
                             dtype=np.uint8).reshape(HEIGHT, WIDTH, 3)
            image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255)
            Image.fromarray(image.astype(np.uint8)).save(
                image_dir / f'{name}_leftImg8bit.png')
            Image.fromarray(ids).save(gt_dir /
                                      f'{name}_gtFine_instanceIds.png')
            Image.fromarray(label_ids.astype(np.uint8)).save(
                gt_dir / f'{name}_gtFine_labelIds.png')


@pytest.fixture(scope='module')
def cityscapes_root(tmp_path_factory, run_main) -> Path:
    """A tiny Cityscapes root, converted with the CLI."""
    root = tmp_path_factory.mktemp('cityscapes')
    write_cityscapes(root)
    run_main(CONVERTER, root)
    return root


def _dataset(root: Path, split: str, **kwargs) -> CityscapesPanopticDataset:
    register_all_modules()
    return DATASETS.build(
        dict(
            type='CityscapesPanopticDataset',
            data_root=str(root),
            ann_file=f'annotations/cityscapes_panoptic_{split}.json',
            data_prefix=dict(
                img=f'leftImg8bit/{split}/',
                seg=f'annotations/cityscapes_panoptic_{split}/'),
            **kwargs))


def test_metainfo_matches_cityscapesscripts():
    evaluated = [label for label in cs_labels if not label.ignoreInEval]
    things = [label for label in evaluated if label.hasInstances]
    stuff = [label for label in evaluated if not label.hasInstances]
    # Things first, each group in train-id order.
    ordered = sorted(
        things, key=lambda label: label.trainId) + sorted(
            stuff, key=lambda label: label.trainId)
    assert METAINFO['classes'] == tuple(label.name for label in ordered)
    assert METAINFO['thing_classes'] == tuple(label.name for label in things)
    assert METAINFO['stuff_classes'] == tuple(label.name for label in stuff)
    assert METAINFO['palette'] == [label.color for label in ordered]


def test_conversion_layout(cityscapes_root):
    official_json = cityscapes_root / 'gtFine' / 'cityscapes_panoptic_val.json'
    mmdet_json = cityscapes_root / 'annotations/cityscapes_panoptic_val.json'
    official = json.loads(official_json.read_text())
    converted = json.loads(mmdet_json.read_text())
    # Categories: official label ids, in the dataset's class order.
    assert [c['name']
            for c in converted['categories']] == list(METAINFO['classes'])
    assert {c['id']
            for c in converted['categories']
            } == {c['id']
                  for c in official['categories']}
    assert [c['isthing']
            for c in converted['categories']] == [1] * 8 + [0] * 11
    # Images: the real image names; the PNGs are named after them and hold
    # the official segments.
    assert [image['file_name'] for image in converted['images']
            ] == [f'{name}_leftImg8bit.png' for name in SPLITS['val']]
    for ours, theirs in zip(converted['annotations'], official['annotations']):
        assert ours['segments_info'] == theirs['segments_info']
        png = cityscapes_root / 'annotations/cityscapes_panoptic_val' / ours[
            'file_name']
        official_png = (
            cityscapes_root / 'gtFine/cityscapes_panoptic_val' /
            theirs['file_name'])
        assert np.array_equal(
            np.asarray(Image.open(png)), np.asarray(Image.open(official_png)))


def test_dataset_loading(cityscapes_root):
    dataset = _dataset(
        cityscapes_root,
        'train',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadPanopticAnnotations'),
            dict(type='PackDetInputs')
        ])
    assert len(dataset) == len(SPLITS['train'])
    info = dataset.get_data_info(2)
    assert info['img_path'].endswith(
        'leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png')
    assert info['img_id'] == 'bochum_000000_000313'
    by_id = {s['id']: s for s in info['segments_info']}
    person = METAINFO['classes'].index('person')
    assert by_id[26001] == dict(
        id=26001, category=METAINFO['classes'].index('car'), is_thing=1)
    assert by_id[33004]['category'] == METAINFO['classes'].index('bicycle')
    assert by_id[7]['category'] == METAINFO['classes'].index('road')
    # The crowd of persons is a segment but no instance.
    assert by_id[24] == dict(id=24, category=person, is_thing=False)

    sample = dataset[2]['data_samples']
    ids = np.asarray(
        Image.open(cityscapes_root / 'gtFine/train/bochum' /
                   'bochum_000000_000313_gtFine_instanceIds.png'))
    sem_seg = sample.gt_sem_seg.sem_seg[0].numpy()
    assert (sem_seg[ids == 0] == 255).all()
    assert (sem_seg[ids == 23] == METAINFO['classes'].index('sky')).all()
    assert sorted(sample.gt_instances.labels.tolist()) == sorted(
        METAINFO['classes'].index(name)
        for name in ('car', 'car', 'person', 'bicycle'))


def _segment_ids(png: Path) -> np.ndarray:
    """Read the segment ids of a COCO-panoptic PNG."""
    rgb = np.asarray(Image.open(png)).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def test_coco_and_official_metrics_agree(cityscapes_root):
    """mmdet's PQ on the converted files equals the official PQ."""
    dataset = _dataset(cityscapes_root, 'val', test_mode=True)
    annotations = json.loads(
        (cityscapes_root /
         'annotations/cityscapes_panoptic_val.json').read_text())
    cat2label = {
        c['id']: label
        for label, c in enumerate(annotations['categories'])
    }
    samples = []
    for index, annotation in enumerate(annotations['annotations']):
        ids = _segment_ids(cityscapes_root /
                           'annotations/cityscapes_panoptic_val' /
                           annotation['file_name'])
        # The ground truth in mmdet's encoding, crowds and void as void.
        pan = np.full(ids.shape, len(METAINFO['classes']), dtype=np.int64)
        for instance, segment in enumerate(annotation['segments_info'], 1):
            if not segment['iscrowd']:
                pan[ids == segment['id']] = (
                    cat2label[segment['category_id']] +
                    instance * INSTANCE_OFFSET)
        if index == 0:  # a missed car and a too-large sky
            pan[ids == 26001] = cat2label[7]
            pan[:20] = cat2label[23]
        info = dataset.get_data_info(index)
        samples.append(
            dict(
                img_id=info['img_id'],
                img_path=info['img_path'],
                ori_shape=(HEIGHT, WIDTH),
                pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pan)[None])))

    coco = CocoPanopticMetric(
        ann_file=str(cityscapes_root /
                     'annotations/cityscapes_panoptic_val.json'),
        seg_prefix=str(cityscapes_root /
                       'annotations/cityscapes_panoptic_val'),
        nproc=1)
    official = CityscapesPanopticMetric(
        gt_json_file=str(cityscapes_root /
                         'gtFine/cityscapes_panoptic_val.json'))
    results = {}
    for metric in (coco, official):
        metric.dataset_meta = METAINFO
        metric.process({}, samples)
        results.update(metric.evaluate(len(samples)))
    assert 50 < results['cityscapes_panoptic/PQ'] < 100
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert results[f'coco_panoptic/{key}'] == pytest.approx(
            results[f'cityscapes_panoptic/{key}'])


def test_bad_input(cityscapes_root, tmp_path, capsys, run_main):
    with pytest.raises(ValueError, match='not a Cityscapes image name'):
        cityscapes_city('frankfurt_000000_000294_gtFine_labelIds.png')
    with pytest.raises(SystemExit, match='2'):
        run_main(CONVERTER, tmp_path)
    assert 'gtFine/train/*/*_gtFine_instanceIds.png' in capsys.readouterr().err

    # An image missing from leftImg8bit/ is named at conversion time.
    gt_dir = cityscapes_root / 'gtFine'
    with pytest.raises(FileNotFoundError, match='frankfurt_000000_000294'):
        official_to_mmdet(
            str(gt_dir / 'cityscapes_panoptic_val.json'),
            str(gt_dir / 'cityscapes_panoptic_val'), str(tmp_path),
            str(tmp_path / 'out.json'), str(tmp_path / 'out'))


def test_config_matches_dataset():
    """The Cityscapes recipe's model and data agree with the dataset."""
    cfg = Config.fromfile(CITYSCAPES_CONFIG)
    head = cfg.model.panoptic_head
    assert (head.num_things_classes, head.num_stuff_classes) == (8, 11)
    assert len(head.loss_cls.class_weight) == len(METAINFO['classes']) + 1
    assert (cfg.model.panoptic_fusion_head.num_things_classes,
            cfg.model.panoptic_fusion_head.num_stuff_classes) == (8, 11)
    assert cfg.train_dataloader.dataset.type == 'CityscapesPanopticDataset'
    assert cfg.test_dataloader.dataset.ann_file.endswith('_val.json')
    assert [e.type for e in cfg.test_evaluator
            ] == ['CocoPanopticMetric', 'CityscapesPanopticMetric']
    assert cfg.model.data_preprocessor.batch_augments[0].size == (512, 1024)
    assert cfg.train_cfg.max_iters == 90000


def _tiny_cityscapes_config(root: Path, work_dir: Path) -> Config:
    """The Cityscapes recipe with the tiny model and tiny image sizes."""
    cfg = Config.fromfile(CITYSCAPES_CONFIG)
    tiny = Config.fromfile(TINY_CONFIG)
    num_classes = len(METAINFO['classes'])
    cfg.model = tiny.model
    cfg.model.panoptic_head.update(
        num_things_classes=8,
        num_stuff_classes=11,
        loss_cls=dict(
            tiny.model.panoptic_head.loss_cls,
            class_weight=[1.0] * num_classes + [0.1]))
    cfg.model.panoptic_fusion_head.update(
        num_things_classes=8, num_stuff_classes=11)
    for key in ('optim_wrapper', 'param_scheduler', 'log_processor'):
        cfg[key] = tiny[key]
    # Two iterations, then the loop's final validation; no checkpoints.
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = None
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
        cfg[loader].dataset.data_root = str(root)
        for transform in cfg[loader].dataset.pipeline:
            if transform.type == 'RandomChoiceResize':
                transform.scales = [(256, 64), (256, 96)]
            elif transform.type == 'RandomCrop':
                transform.crop_size = (WIDTH, HEIGHT)
            elif transform.type == 'Resize':
                transform.scale = (WIDTH, HEIGHT)
    cfg.val_evaluator[0].update(
        ann_file=str(root / 'annotations/cityscapes_panoptic_val.json'),
        seg_prefix=str(root / 'annotations/cityscapes_panoptic_val'),
        nproc=1)
    cfg.val_evaluator[1].gt_json_file = str(
        root / 'gtFine/cityscapes_panoptic_val.json')
    cfg.test_evaluator = cfg.val_evaluator
    cfg.work_dir = str(work_dir)
    return cfg


def test_train_and_evaluate(cityscapes_root, tmp_path, single_thread):
    """A few iterations on the converted data, then both PQs."""
    runner = Runner.from_cfg(
        _tiny_cityscapes_config(cityscapes_root, tmp_path))
    runner.train()
    assert runner.iter == 2
    for prefix in ('coco_panoptic', 'cityscapes_panoptic'):
        pq = runner.message_hub.get_scalar(f'val/{prefix}/PQ').current()
        assert 0 <= pq <= 100
