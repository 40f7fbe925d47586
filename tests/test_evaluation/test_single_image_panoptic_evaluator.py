# Copyright (c) The proscale Authors. All rights reserved.
"""SingleImagePanopticEvaluator scores mmdet predictions image by image
exactly as mmdet's CocoPanopticMetric does."""
import json

import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoPanopticMetric
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmengine.structures import PixelData
from panopticapi.utils import id2rgb
from PIL import Image

from proscale.evaluation import (SingleImagePanopticEvaluator,
                                 prediction_to_coco_panoptic)

# File order (by id) differs from the class order: mmdet maps label i to the
# i-th category id of the file whose name is in `classes`.
CATEGORIES = [
    dict(id=1, name='person', isthing=1),
    dict(id=3, name='car', isthing=1),
    dict(id=100, name='sky', isthing=0),
    dict(id=121, name='road', isthing=0),
]
CLASSES = ('car', 'person', 'sky', 'road')
NUM_THINGS = 2
NUM_IMAGES = 6


@pytest.fixture(scope='module')
def annotated_images(tmp_path_factory):
    """Write a COCO panoptic annotation file with crowd and void regions."""
    root = tmp_path_factory.mktemp('panoptic')
    (root / 'gt').mkdir()
    rng = np.random.default_rng(1)
    images, annotations = [], []
    for image_id in range(1, NUM_IMAGES + 1):
        height, width = 24, 32
        gt = np.zeros((height, width), np.int64)
        segments = []
        for k in range(rng.integers(0, 6)):
            seg_id = int(rng.integers(1, 256**3))
            y0, x0 = rng.integers(0, height - 2), rng.integers(0, width - 2)
            gt[y0:y0 + rng.integers(2, 16), x0:x0 + rng.integers(2, 20)] = \
                seg_id
            category = CATEGORIES[int(rng.integers(0, 4))]
            segments.append(
                dict(
                    id=seg_id,
                    category_id=category['id'],
                    iscrowd=int(category['isthing'] and rng.random() < 0.3)))
        for segment in segments:
            segment['area'] = int((gt == segment['id']).sum())
        name = f'{image_id:012d}'
        Image.fromarray(id2rgb(gt).astype(np.uint8)).save(root / 'gt' /
                                                          f'{name}.png')
        images.append(
            dict(
                id=image_id,
                file_name=f'{name}.jpg',
                height=height,
                width=width))
        annotations.append(
            dict(
                image_id=image_id,
                file_name=f'{name}.png',
                segments_info=[s for s in segments if s['area'] > 0]))
    ann_file = root / 'panoptic.json'
    ann_file.write_text(
        json.dumps(
            dict(
                images=images, annotations=annotations,
                categories=CATEGORIES)))
    return str(ann_file), root / 'gt', annotations


def _fake_prediction(gt: np.ndarray, annotation: dict,
                     evaluator: SingleImagePanopticEvaluator,
                     rng: np.random.Generator) -> torch.Tensor:
    """An mmdet panoptic map (label + instance * INSTANCE_OFFSET, void =
    num_classes) made from a shifted, partly relabelled ground truth."""
    cat2label = {cat: label for label, cat in evaluator.label2cat.items()}
    pred = np.full(gt.shape, len(CLASSES), np.int64)
    shifted = np.roll(gt, rng.integers(-2, 3, size=2), axis=(0, 1))
    for instance, segment in enumerate(annotation['segments_info'], 1):
        label = cat2label[segment['category_id']]
        if rng.random() < 0.2:
            label = int(rng.integers(0, len(CLASSES)))
        if label < NUM_THINGS:
            label += instance * INSTANCE_OFFSET
        pred[shifted == segment['id']] = label
    pred[rng.random(gt.shape) < 0.03] = len(CLASSES)
    return torch.from_numpy(pred.astype(np.int32))[None]


def _metric_table(metric: CocoPanopticMetric, data_sample: dict) -> np.ndarray:
    metric.process({}, [data_sample])
    pq_stat = metric.results.pop()
    table = np.full((3, 3), np.nan)
    for i, isthing in enumerate((None, True, False)):
        try:
            results = pq_stat.pq_average(metric.categories, isthing)[0]
        except ZeroDivisionError:
            continue
        table[i] = [results['pq'], results['sq'], results['rq']]
    return table


def test_equals_coco_panoptic_metric(annotated_images):
    ann_file, gt_dir, annotations = annotated_images
    evaluator = SingleImagePanopticEvaluator(ann_file, CLASSES)
    assert evaluator.label2cat == {0: 1, 1: 3, 2: 100, 3: 121}
    metric = CocoPanopticMetric(ann_file=ann_file, seg_prefix=str(gt_dir))
    metric.dataset_meta = dict(
        classes=CLASSES,
        thing_classes=CLASSES[:NUM_THINGS],
        stuff_classes=CLASSES[NUM_THINGS:])
    rng = np.random.default_rng(0)
    compared = nan_groups = 0
    for annotation in annotations:
        image_id = annotation['image_id']
        seg_map_path = str(gt_dir / annotation['file_name'])
        gt, _ = evaluator.load_ground_truth(image_id, seg_map_path)
        for _ in range(3):
            sem_seg = _fake_prediction(gt, annotation, evaluator, rng)
            ours = evaluator.evaluate(image_id, seg_map_path,
                                      [PixelData(sem_seg=sem_seg)])[0]
            expected = _metric_table(
                metric,
                dict(
                    img_id=image_id,
                    img_path=f"img/{annotation['file_name']}".replace(
                        '.png', '.jpg'),
                    ori_shape=gt.shape,
                    pred_panoptic_seg=dict(sem_seg=sem_seg)))
            assert np.array_equal(np.isnan(ours), np.isnan(expected))
            np.testing.assert_allclose(
                ours[~np.isnan(ours)],
                expected[~np.isnan(expected)],
                rtol=0,
                atol=1e-9)
            compared += 1
            nan_groups += int(np.isnan(ours).any())
    assert compared == 3 * NUM_IMAGES and nan_groups > 0


def test_prediction_conversion():
    pan = np.array([[2, 2, 4, 1001], [1001, 4, 3002, 3002]])
    ids, segments = prediction_to_coco_panoptic(
        pan, num_classes=4, label2cat={
            0: 1,
            1: 3,
            2: 100,
            3: 121
        })
    assert ids.tolist() == [[2, 2, 0, 1001], [1001, 0, 3002, 3002]]
    assert segments == [
        dict(id=2, category_id=100, area=2),
        dict(id=1001, category_id=3, area=2),
        dict(id=3002, category_id=100, area=2),
    ]


def test_mismatched_shape_and_classes_raise(annotated_images, tmp_path):
    ann_file, gt_dir, annotations = annotated_images
    evaluator = SingleImagePanopticEvaluator(ann_file, CLASSES)
    wrong = PixelData(sem_seg=torch.zeros((1, 5, 5), dtype=torch.int32))
    with pytest.raises(ValueError, match='shape'):
        evaluator.evaluate(1, str(gt_dir / annotations[0]['file_name']),
                           [wrong])
    with pytest.raises(ValueError, match='do not all name a category'):
        SingleImagePanopticEvaluator(ann_file, ('car', 'bus'))
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png')
    with pytest.raises(ValueError, match='cannot decode'):
        evaluator.load_ground_truth(1, str(broken))
