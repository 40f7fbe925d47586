# Copyright (c) The proscale Authors. All rights reserved.
"""Per-task exit quality: box AP of mmdet predictions against pycocotools
on each image alone, with CocoMetric's own conversion of the predictions."""
import contextlib
import io

import numpy as np
import pytest
import torch
from mmdet.datasets import CocoDataset
from mmdet.evaluation import CocoMetric
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from proscale.evaluation import (BoxExitQuality, PanopticExitQuality,
                                 build_exit_quality)

CLASSES = ('circle', 'square', 'triangle', 'cross')


@pytest.fixture(scope='module')
def box_dataset(synthetic_data_root):
    dataset = CocoDataset(
        data_root=synthetic_data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=CLASSES),
        filter_cfg=None,
        pipeline=[])
    dataset.full_init()
    return dataset


def _predictions(rng, gt_bboxes, gt_labels, num_extra):
    """Jittered GT boxes (xyxy, contiguous labels) plus false positives."""
    boxes = gt_bboxes + rng.normal(0, 2, gt_bboxes.shape)
    labels = gt_labels.copy()
    extra = rng.uniform(0, 48, (num_extra, 2))
    boxes = np.concatenate(
        [boxes, np.concatenate([extra, extra + 8], axis=1)])
    labels = np.concatenate([labels, rng.integers(0, 4, num_extra)])
    scores = rng.random(len(boxes)).round(1)  # ties keep the input order
    return DetDataSample(
        pred_instances=InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            scores=torch.tensor(scores, dtype=torch.float32),
            labels=torch.tensor(labels)))


def _pycocotools_stats(ann_file, image_id, prediction, tmp_path):
    """``stats[0:3]`` of COCOeval on this image alone, with the detections
    CocoMetric.results2json writes."""
    metric = CocoMetric(ann_file=ann_file, metric='bbox')
    metric.dataset_meta = dict(classes=CLASSES)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        metric.cat_ids = gt.getCatIds(catNms=CLASSES)
        instances = prediction.pred_instances
        files = metric.results2json([
            dict(
                img_id=image_id,
                bboxes=instances.bboxes.numpy(),
                scores=instances.scores.numpy(),
                labels=instances.labels.numpy())
        ], str(tmp_path / 'results'))
        evaluator = COCOeval(gt, gt.loadRes(files['bbox']), 'bbox')
        evaluator.params.imgIds = [image_id]
        evaluator.params.catIds = metric.cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[:3]


def test_box_quality_equals_pycocotools_on_each_image(box_dataset, tmp_path):
    quality = build_exit_quality('bbox', box_dataset)
    assert isinstance(quality, BoxExitQuality)
    assert quality.metrics == ('ap', 'ap50', 'ap75')
    rng = np.random.default_rng(0)
    checked = 0
    for index in range(6):
        info = box_dataset.get_data_info(index)
        gt_bboxes = np.array([inst['bbox'] for inst in info['instances']],
                             dtype=np.float64).reshape(-1, 4)
        gt_labels = np.array(
            [inst['bbox_label'] for inst in info['instances']],
            dtype=np.int64)
        predictions = [
            _predictions(rng, gt_bboxes, gt_labels, num_extra)
            for num_extra in (0, 3, 12)
        ]
        tables = quality.evaluate(info['img_id'], predictions)
        assert tables.shape == (3, 1, 3)
        for table, prediction in zip(tables, predictions):
            expected = _pycocotools_stats(box_dataset.ann_file,
                                          info['img_id'], prediction,
                                          tmp_path)
            if (expected < 0).all():
                assert np.isnan(table[0]).all()
            else:
                np.testing.assert_allclose(
                    table[0], expected, rtol=0, atol=1e-12)
                checked += 1
    assert checked >= 12
    # neither trivial: the jittered boxes are partly matched
    assert 0 < np.nanmean(tables[..., 0]) < 1


def test_empty_prediction_and_unknown_task(box_dataset):
    quality = BoxExitQuality(box_dataset)
    image_id = box_dataset.get_data_info(0)['img_id']
    empty = DetDataSample(
        pred_instances=InstanceData(
            bboxes=torch.zeros(0, 4),
            scores=torch.zeros(0),
            labels=torch.zeros(0, dtype=torch.long)))
    assert quality.evaluate(image_id, [empty]).tolist() == [[[0, 0, 0]]]
    assert quality.evaluate(image_id, []).shape == (0, 1, 3)
    with pytest.raises(ValueError, match="no per-image quality for task"):
        build_exit_quality('keypoints', box_dataset)


def test_panoptic_quality_needs_seg_maps(box_dataset):
    assert PanopticExitQuality.metrics == ('pq', 'sq', 'rq')
    with pytest.raises(ValueError, match='seg_map_path'):
        PanopticExitQuality(box_dataset)
