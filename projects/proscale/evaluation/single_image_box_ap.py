# Copyright (c) The proscale Authors. All rights reserved.
"""COCO box AP of a single image, as pycocotools computes it.

:func:`single_image_box_ap` returns what ``COCOeval(gt, dt, 'bbox')`` with
``params.imgIds = [image]`` reports as ``stats[0]`` (AP at IoU 0.50:0.95,
area ``all``, 100 detections) for one image, without building COCO objects;
:func:`single_image_box_stats` returns ``stats[0:3]`` (AP, AP50, AP75).
It reproduces pycocotools' rules exactly:

* detections and ground truth (GT) of one category are matched greedily in
  decreasing score order (ties keep the input order), at each IoU threshold
  0.50, 0.55, ..., 0.95; only the 100 best-scored detections of each
  category count;
* crowd GT boxes (``iscrowd``) are ignored: a detection matched to one is
  neither a true nor a false positive, and they may be matched several
  times; their IoU is the intersection over the detection's area;
* a non-crowd GT box is preferred to a crowd one, otherwise the GT box with
  the highest IoU (the last one listed among equals) wins;
* precision is made monotone and sampled at the 101 recall thresholds
  0, 0.01, ..., 1;
* the AP is the mean over the (IoU threshold, recall threshold, category)
  cells of the categories with at least one non-crowd GT box in the image:
  categories with detections only do not count. Without such a category,
  pycocotools' value is -1 (:data:`UNDEFINED_AP`).
"""
from typing import Optional

import numpy as np

IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round(1.00 / .01)) + 1)
MAX_DETS = 100
UNDEFINED_AP = -1.0
# The statistics of single_image_box_stats: pycocotools' stats[0:3].
BOX_STATS = ('ap', 'ap50', 'ap75')


def box_iou_xywh(dets: np.ndarray, gts: np.ndarray,
                 iscrowd: np.ndarray) -> np.ndarray:
    """IoU of COCO ``[x, y, w, h]`` boxes as pycocotools' ``maskUtils.iou``.

    Args:
        dets (np.ndarray): Detected boxes, shape (D, 4).
        gts (np.ndarray): GT boxes, shape (G, 4).
        iscrowd (np.ndarray): Crowd flag of each GT box, shape (G, ); for a
            crowd box the union is the detection's area.

    Returns:
        np.ndarray: IoUs, shape (D, G), float64.
    """
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 4)
    gts = np.asarray(gts, dtype=np.float64).reshape(-1, 4)
    width = (np.minimum(dets[:, None, 0] + dets[:, None, 2],
                        gts[None, :, 0] + gts[None, :, 2]) -
             np.maximum(dets[:, None, 0], gts[None, :, 0]))
    height = (np.minimum(dets[:, None, 1] + dets[:, None, 3],
                         gts[None, :, 1] + gts[None, :, 3]) -
              np.maximum(dets[:, None, 1], gts[None, :, 1]))
    inter = np.where((width > 0) & (height > 0), width * height, 0.)
    det_area = (dets[:, 2] * dets[:, 3])[:, None]
    gt_area = (gts[:, 2] * gts[:, 3])[None, :]
    union = np.where(
        np.asarray(iscrowd, dtype=bool)[None, :], det_area,
        det_area + gt_area - inter)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(inter > 0, inter / union, 0.)


def _match(ious: np.ndarray, gt_ignore: np.ndarray,
           iscrowd: np.ndarray) -> tuple:
    """pycocotools' greedy matching of one image and category.

    Args:
        ious (np.ndarray): IoUs (D, G) of the score-sorted detections and
            the GT boxes sorted non-ignored first.
        gt_ignore (np.ndarray): Ignore flag of the sorted GT boxes, (G, ).
        iscrowd (np.ndarray): Crowd flag of the sorted GT boxes, (G, ).

    Returns:
        tuple[np.ndarray, np.ndarray]: ``matched`` and ``ignored`` flags of
        the detections, each of shape (T, D) for the T IoU thresholds.
    """
    num_dets, num_gts = ious.shape
    matched = np.zeros((len(IOU_THRESHOLDS), num_dets), dtype=bool)
    ignored = np.zeros((len(IOU_THRESHOLDS), num_dets), dtype=bool)
    for t, threshold in enumerate(IOU_THRESHOLDS):
        gt_taken = np.zeros(num_gts, dtype=bool)
        for d in range(num_dets):
            best_iou = min(threshold, 1 - 1e-10)
            best = -1
            for g in range(num_gts):
                if gt_taken[g] and not iscrowd[g]:
                    continue
                if best > -1 and not gt_ignore[best] and gt_ignore[g]:
                    break
                if ious[d, g] < best_iou:
                    continue
                best_iou, best = ious[d, g], g
            if best == -1:
                continue
            ignored[t, d] = gt_ignore[best]
            matched[t, d] = True
            gt_taken[best] = True
    return matched, ignored


def _precision_at_recalls(matched: np.ndarray, ignored: np.ndarray,
                          num_gts: int) -> np.ndarray:
    """pycocotools' interpolated precision of one category.

    Args:
        matched (np.ndarray): (T, D) match flags, detections score-sorted.
        ignored (np.ndarray): (T, D) ignore flags.
        num_gts (int): Number of non-ignored GT boxes (> 0).

    Returns:
        np.ndarray: Precision at the recall thresholds, shape (T, R).
    """
    tps = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fps = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    precision = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
    for t, (tp, fp) in enumerate(zip(tps, fps)):
        recall = tp / num_gts
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1]
        indices = np.searchsorted(recall, RECALL_THRESHOLDS, side='left')
        valid = indices < len(pr)
        precision[t, valid] = pr[indices[valid]]
    return precision


def single_image_box_stats(gt_bboxes: np.ndarray,
                           gt_labels: np.ndarray,
                           det_bboxes: np.ndarray,
                           det_scores: np.ndarray,
                           det_labels: np.ndarray,
                           gt_iscrowd: Optional[np.ndarray] = None,
                           max_dets: int = MAX_DETS) -> np.ndarray:
    """COCO box AP, AP50 and AP75 (all areas) of one image.

    Args:
        gt_bboxes (np.ndarray): GT boxes ``[x, y, w, h]``, shape (G, 4).
        gt_labels (np.ndarray): GT category ids, shape (G, ).
        det_bboxes (np.ndarray): Detected boxes ``[x, y, w, h]``, (D, 4).
        det_scores (np.ndarray): Detection scores, shape (D, ).
        det_labels (np.ndarray): Detection category ids, shape (D, ).
        gt_iscrowd (np.ndarray, optional): Crowd flags of the GT boxes,
            shape (G, ). Defaults to None (no crowd).
        max_dets (int): Best-scored detections kept per category,
            pycocotools' ``params.maxDets[-1]``. Defaults to 100.

    Returns:
        np.ndarray: Shape (3, ), float64: what pycocotools reports as
        ``stats[0]``, ``stats[1]`` and ``stats[2]`` (:data:`BOX_STATS`: AP
        at IoU 0.50:0.95, 0.50 and 0.75) for a data set made of this image,
        each in [0, 1], or :data:`UNDEFINED_AP` (-1) everywhere when the
        image has no non-crowd GT box.
    """
    gt_bboxes = np.asarray(gt_bboxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    det_bboxes = np.asarray(det_bboxes, dtype=np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    det_labels = np.asarray(det_labels).reshape(-1)
    gt_iscrowd = np.zeros(len(gt_labels), dtype=bool) if gt_iscrowd is None \
        else np.asarray(gt_iscrowd, dtype=bool).reshape(-1)
    if not len(gt_bboxes) == len(gt_labels) == len(gt_iscrowd):
        raise ValueError('gt_bboxes, gt_labels and gt_iscrowd differ in '
                         f'length: {len(gt_bboxes)}, {len(gt_labels)}, '
                         f'{len(gt_iscrowd)}')
    if not len(det_bboxes) == len(det_scores) == len(det_labels):
        raise ValueError('det_bboxes, det_scores and det_labels differ in '
                         f'length: {len(det_bboxes)}, {len(det_scores)}, '
                         f'{len(det_labels)}')

    precisions = []
    for category in np.unique(gt_labels):
        gts = np.flatnonzero(gt_labels == category)
        gts = gts[np.argsort(gt_iscrowd[gts], kind='mergesort')]
        if not (~gt_iscrowd[gts]).any():
            continue
        dets = np.flatnonzero(det_labels == category)
        dets = dets[np.argsort(-det_scores[dets], kind='mergesort')]
        dets = dets[:max_dets]
        ious = box_iou_xywh(det_bboxes[dets], gt_bboxes[gts],
                            gt_iscrowd[gts])
        matched, ignored = _match(ious, gt_iscrowd[gts], gt_iscrowd[gts])
        precisions.append(
            _precision_at_recalls(matched, ignored,
                                  int((~gt_iscrowd[gts]).sum())))
    if not precisions:
        return np.full(len(BOX_STATS), UNDEFINED_AP)
    # (K, T, R); every category has the same number of cells, so the mean
    # over cells is pycocotools' mean over the valid entries
    precision = np.stack(precisions)
    iou50 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5)))
    iou75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
    return np.array([
        precision.mean(), precision[:, iou50].mean(),
        precision[:, iou75].mean()
    ])


def single_image_box_ap(gt_bboxes: np.ndarray,
                        gt_labels: np.ndarray,
                        det_bboxes: np.ndarray,
                        det_scores: np.ndarray,
                        det_labels: np.ndarray,
                        gt_iscrowd: Optional[np.ndarray] = None) -> float:
    """COCO box AP (IoU 0.50:0.95, all areas, 100 detections) of one image.

    Args:
        gt_bboxes (np.ndarray): GT boxes ``[x, y, w, h]``, shape (G, 4).
        gt_labels (np.ndarray): GT category ids, shape (G, ).
        det_bboxes (np.ndarray): Detected boxes ``[x, y, w, h]``, (D, 4).
        det_scores (np.ndarray): Detection scores, shape (D, ).
        det_labels (np.ndarray): Detection category ids, shape (D, ).
        gt_iscrowd (np.ndarray, optional): Crowd flags of the GT boxes,
            shape (G, ). Defaults to None (no crowd).

    Returns:
        float: The AP in [0, 1] that pycocotools reports for a data set made
        of this image, or :data:`UNDEFINED_AP` (-1) when the image has no
        non-crowd GT box.
    """
    return float(
        single_image_box_stats(gt_bboxes, gt_labels, det_bboxes, det_scores,
                               det_labels, gt_iscrowd)[0])
