# Copyright (c) The proscale Authors. All rights reserved.
"""Per-image COCO box AP against pycocotools' COCOeval on that image."""
import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from proscale.evaluation import single_image_box_ap
from proscale.evaluation.single_image_box_ap import (UNDEFINED_AP,
                                                     box_iou_xywh,
                                                     single_image_box_stats)

NUM_CATEGORIES = 3


def _pycocotools_stats(gt_bboxes, gt_labels, gt_iscrowd, det_bboxes,
                       det_scores, det_labels) -> np.ndarray:
    """``stats`` of COCOeval on a data set made of this one image."""
    gt = COCO()
    gt.dataset = dict(
        images=[dict(id=1, width=100, height=100)],
        categories=[
            dict(id=c, name=str(c)) for c in range(1, NUM_CATEGORIES + 1)
        ],
        annotations=[
            dict(
                id=i + 1,
                image_id=1,
                category_id=int(label),
                bbox=[float(v) for v in box],
                area=float(box[2] * box[3]),
                iscrowd=int(crowd))
            for i, (box, label, crowd) in enumerate(
                zip(gt_bboxes, gt_labels, gt_iscrowd))
        ])
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        results = [
            dict(
                image_id=1,
                category_id=int(label),
                bbox=[float(v) for v in box],
                score=float(score))
            for box, score, label in zip(det_bboxes, det_scores, det_labels)
        ]
        dt = gt.loadRes(results) if results else COCO()
        if not results:
            dt.dataset = dict(images=gt.dataset['images'], annotations=[],
                              categories=gt.dataset['categories'])
            dt.createIndex()
        evaluator = COCOeval(gt, dt, 'bbox')
        evaluator.params.imgIds = [1]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def _random_image(rng: np.random.Generator, num_gts: int, num_dets: int,
                  crowd_fraction: float, quantized_scores: bool):
    """GT boxes and noisy, partly duplicated detections of one image."""
    gt_bboxes = np.concatenate(
        [rng.uniform(0, 60, (num_gts, 2)), rng.uniform(4, 40, (num_gts, 2))],
        axis=1).round(1)
    gt_labels = rng.integers(1, NUM_CATEGORIES + 1, num_gts)
    gt_iscrowd = rng.random(num_gts) < crowd_fraction
    sources = rng.integers(0, max(num_gts, 1), num_dets)
    det_bboxes = np.concatenate([
        rng.uniform(0, 60, (num_dets, 2)),
        rng.uniform(4, 40, (num_dets, 2))
    ], axis=1)
    if num_gts:
        near = rng.random(num_dets) < 0.7
        det_bboxes[near] = gt_bboxes[sources[near]] + rng.normal(
            0, 3, (near.sum(), 4))
        det_bboxes[:, 2:] = np.abs(det_bboxes[:, 2:]) + 0.5
    det_labels = np.where(
        rng.random(num_dets) < 0.8,
        gt_labels[sources] if num_gts else 1,
        rng.integers(1, NUM_CATEGORIES + 1, num_dets))
    det_scores = rng.random(num_dets)
    if quantized_scores:  # ties: pycocotools keeps the input order
        det_scores = det_scores.round(1)
    return (gt_bboxes, gt_labels, gt_iscrowd, det_bboxes.round(2),
            det_scores, det_labels)


@pytest.mark.parametrize('seed', range(40))
def test_equals_pycocotools_on_random_images(seed):
    rng = np.random.default_rng(seed)
    num_gts = int(rng.integers(0, 8))
    num_dets = int(rng.choice([0, 3, 15, 130]))
    (gt_bboxes, gt_labels, gt_iscrowd, det_bboxes, det_scores,
     det_labels) = _random_image(rng, num_gts, num_dets,
                                 crowd_fraction=0.25 * (seed % 3),
                                 quantized_scores=seed % 2 == 1)
    expected = _pycocotools_stats(gt_bboxes, gt_labels, gt_iscrowd,
                                  det_bboxes, det_scores, det_labels)
    ap = single_image_box_ap(gt_bboxes, gt_labels, det_bboxes, det_scores,
                             det_labels, gt_iscrowd)
    assert ap == pytest.approx(expected[0], abs=1e-12)
    stats = single_image_box_stats(gt_bboxes, gt_labels, det_bboxes,
                                   det_scores, det_labels, gt_iscrowd)
    np.testing.assert_allclose(stats, expected[:3], rtol=0, atol=1e-12)


def test_perfect_and_undefined_images():
    boxes = np.array([[0., 0., 10., 10.], [20., 20., 5., 8.]])
    labels = np.array([1, 2])
    # pycocotools' precision tp / (tp + fp + eps) stays just below 1.
    assert single_image_box_ap(boxes, labels, boxes, [0.9, 0.8],
                               labels) == pytest.approx(1.0)
    # No GT box: pycocotools reports -1, with or without detections.
    assert single_image_box_ap(np.zeros((0, 4)), [], boxes, [0.9, 0.8],
                               labels) == UNDEFINED_AP
    assert single_image_box_ap(boxes, labels, np.zeros((0, 4)), [], []) == 0
    # Detections of a category absent from the image do not count.
    assert single_image_box_ap(boxes[:1], labels[:1], boxes, [0.9, 0.8],
                               [1, 3]) == pytest.approx(1.0)


def test_crowd_iou_is_over_the_detection_area():
    gt = np.array([[0., 0., 10., 10.]])
    det = np.array([[0., 0., 5., 5.]])
    assert box_iou_xywh(det, gt, [True])[0, 0] == 1.0
    assert box_iou_xywh(det, gt, [False])[0, 0] == 0.25


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match='gt_bboxes, gt_labels'):
        single_image_box_ap(np.zeros((2, 4)), [1], np.zeros((0, 4)), [], [])
    with pytest.raises(ValueError, match='det_bboxes, det_scores'):
        single_image_box_ap(np.zeros((1, 4)), [1], np.zeros((1, 4)), [], [1])
