# Copyright (c) The proscale Authors. All rights reserved.
"""``CityscapesPanopticMetric`` reproduces cityscapesscripts' evaluation."""
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import \
    evaluatePanoptic
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
from mmdet.evaluation.functional import INSTANCE_OFFSET
from PIL import Image

from proscale.datasets import CityscapesPanopticDataset
from proscale.evaluation.metrics import CityscapesPanopticMetric

HEIGHT, WIDTH = 16, 32
IMAGES = ('frankfurt_000000_000001', 'lindau_000000_000002')
# mmdet labels (things first): person 0, car 2, road 8, sky 18.
PERSON, CAR, ROAD, SKY = 0, 2, 8, 18
VOID_LABEL = len(CityscapesPanopticDataset.METAINFO['classes'])


def _instance_ids() -> np.ndarray:
    """A Cityscapes ``*_gtFine_instanceIds.png`` map (label ids)."""
    ids = np.full((HEIGHT, WIDTH), 7, dtype=np.uint16)  # road
    ids[:4] = 23  # sky
    ids[4:, :2] = 0  # unlabeled: void
    ids[6:12, 4:10] = 26001  # car
    ids[6:12, 12:18] = 26002  # car
    ids[5:15, 20:24] = 24001  # person
    ids[12:16, 26:30] = 26  # a crowd of cars
    return ids


def _gt_panoptic() -> np.ndarray:
    """The ground truth in mmdet's encoding ``label + id * OFFSET``."""
    pan = np.full((HEIGHT, WIDTH), ROAD, dtype=np.int64)
    pan[:4] = SKY
    pan[4:, :2] = VOID_LABEL
    pan[6:12, 4:10] = CAR + 1 * INSTANCE_OFFSET
    pan[6:12, 12:18] = CAR + 2 * INSTANCE_OFFSET
    pan[5:15, 20:24] = PERSON + 1 * INSTANCE_OFFSET
    pan[12:16, 26:30] = CAR + 3 * INSTANCE_OFFSET
    return pan


@pytest.fixture(scope='module')
def gt_json(tmp_path_factory) -> Path:
    """The official panoptic ground truth of two tiny val images."""
    gt_dir = tmp_path_factory.mktemp('cityscapes') / 'gtFine'
    for image_id in IMAGES:
        city_dir = gt_dir / 'val' / image_id.split('_')[0]
        city_dir.mkdir(parents=True)
        Image.fromarray(_instance_ids()).save(
            city_dir / f'{image_id}_gtFine_instanceIds.png')
    convert2panoptic(str(gt_dir), str(gt_dir), setNames=['val'])
    return gt_dir / 'cityscapes_panoptic_val.json'


def _sample(image_id: str, pan: np.ndarray) -> dict:
    return dict(
        img_path=f'data/leftImg8bit/val/x/{image_id}_leftImg8bit.png',
        pred_panoptic_seg=dict(sem_seg=torch.from_numpy(pan)[None]))


def _evaluate(metric: CityscapesPanopticMetric,
              predictions: List[np.ndarray]) -> Dict[str, float]:
    metric.dataset_meta = CityscapesPanopticDataset.METAINFO
    metric.process(
        {},
        [_sample(image_id, pan) for image_id, pan in zip(IMAGES, predictions)])
    return metric.evaluate(len(predictions))


def test_perfect_prediction(gt_json):
    results = _evaluate(
        CityscapesPanopticMetric(gt_json_file=str(gt_json)),
        [_gt_panoptic()] * 2)
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert results[f'cityscapes_panoptic/{key}'] == pytest.approx(100)


def test_matches_official_script(gt_json, tmp_path):
    """A flawed prediction scores what ``evaluatePanoptic`` computes."""
    missed_car = _gt_panoptic()
    missed_car[6:12, 12:18] = ROAD
    shifted = _gt_panoptic()
    shifted[5:15, 20:24] = ROAD
    shifted[5:15, 21:25] = PERSON + 1 * INSTANCE_OFFSET
    shifted[4:5, 2:] = SKY
    prefix = tmp_path / 'results'
    results = _evaluate(
        CityscapesPanopticMetric(
            gt_json_file=str(gt_json),
            outfile_prefix=str(prefix),
            classwise=True), [missed_car, shifted])

    official = evaluatePanoptic(
        str(gt_json), str(gt_json.with_suffix('')), f'{prefix}.json',
        str(prefix), str(tmp_path / 'official.json'))
    for key, group in (('PQ', 'All'), ('PQ_th', 'Things'), ('PQ_st', 'Stuff')):
        assert results[f'cityscapes_panoptic/{key}'] == pytest.approx(
            100 * official[group]['pq'])
    # Car: three exact matches, one missed (the crowd is ignored): 3 / 3.5.
    assert official['per_class'][26]['pq'] == pytest.approx(3 / 3.5)
    assert results['cityscapes_panoptic/PQ'] < 100
    predictions = json.loads(Path(f'{prefix}.json').read_text())
    assert [p['image_id'] for p in predictions['annotations']] == list(IMAGES)
    assert {
        s['category_id']
        for s in predictions['annotations'][0]['segments_info']
    } == {7, 23, 24, 26}


def test_format_only(tmp_path):
    prefix = tmp_path / 'test_results'
    metric = CityscapesPanopticMetric(
        outfile_prefix=str(prefix), format_only=True)
    assert _evaluate(metric, [_gt_panoptic()]) == {}
    saved = json.loads(Path(f'{prefix}.json').read_text())['annotations']
    png = np.asarray(Image.open(prefix / saved[0]['file_name']))
    segment_ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
    assert sorted(np.unique(segment_ids)) == [0] + sorted(
        s['id'] for s in saved[0]['segments_info'])
    assert (segment_ids[4:, :2] == 0).all()  # void stays void


def test_bad_input(gt_json, tmp_path):
    with pytest.raises(ValueError, match='outfile_prefix'):
        CityscapesPanopticMetric(format_only=True)
    with pytest.raises(ValueError, match='gt_json_file is required'):
        CityscapesPanopticMetric()
    missing = tmp_path / 'missing.json'
    with pytest.raises(FileNotFoundError, match=str(missing)):
        CityscapesPanopticMetric(gt_json_file=str(missing))

    metric = CityscapesPanopticMetric(gt_json_file=str(gt_json))
    metric.dataset_meta = CityscapesPanopticDataset.METAINFO
    with pytest.raises(KeyError, match='bremen_000000_000003'):
        metric.process({}, [_sample('bremen_000000_000003', _gt_panoptic())])
    with pytest.raises(ValueError, match='not a Cityscapes image name'):
        metric.process({}, [
            dict(
                img_path='val/image.jpg',
                pred_panoptic_seg=dict(
                    sem_seg=torch.from_numpy(_gt_panoptic())[None]))
        ])
