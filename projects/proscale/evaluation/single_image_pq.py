# Copyright (c) The proscale Authors. All rights reserved.
"""Vectorised panoptic quality (PQ, SQ, RQ) of a single image.

:func:`single_image_pq_stats` reproduces panopticapi's
``pq_compute_single_core`` for one image without writing or reading PNG files,
and :func:`pq_average` reproduces ``PQStat.pq_average``. Together
(:func:`single_image_pq`) they give what ``panopticapi.evaluation.pq_compute``
returns for a data set made of that one image:

* the pixel counts panopticapi gathers per ``gt_id * OFFSET + pred_id``
  (``OFFSET = 256 ** 3``) come from one joint histogram of (GT segment,
  predicted segment) indices; ids must lie in ``[0, OFFSET)``, the 24-bit
  range of the COCO panoptic PNG, for which that pairing is one-to-one;
  pixels with id ``VOID = 0`` that no segment claims are void;
* a ground-truth (GT) and a predicted segment of the same category match when
  ``IoU > 0.5``, where the union leaves out the predicted pixels that fall on
  GT void; crowd GT segments never match;
* GT areas come from the GT ``segments_info`` (``'area'``, as panopticapi reads
  them from the JSON file), predicted areas are counted on the id map; the
  segment fields are used as given, without conversion (a float area stays
  a float, ``iscrowd`` is compared with ``== 1``), as panopticapi does;
* an unmatched predicted segment is not a false positive when more than half
  of it lies on GT void plus the last-listed crowd GT segment of its category;
* PQ, SQ and RQ are averaged over the categories with ``tp + fp + fn > 0``,
  summed one category after the other in the order of ``categories``, so
  that every result is bit-identical to panopticapi's.
  Where no category qualifies (panopticapi divides by zero), the values are
  NaN and ``n`` is 0.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
from panopticapi.evaluation import OFFSET, VOID

PQ_GROUPS = ('All', 'Things', 'Stuff')
PQ_METRICS = ('pq', 'sq', 'rq')


@dataclass
class PanopticStats:
    """Per-category matching counts of one image.

    Attributes:
        category_ids (np.ndarray): Category ids, shape (K, ), sorted.
        iou (np.ndarray): Sum of the IoUs of the true positives, shape (K, ).
        tp (np.ndarray): True positives, shape (K, ).
        fp (np.ndarray): False positives, shape (K, ).
        fn (np.ndarray): False negatives, shape (K, ).
    """
    category_ids: np.ndarray
    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    def get(self, category_id: int) -> Tuple[float, int, int, int]:
        """Return ``(iou, tp, fp, fn)`` of a category (zeros if absent)."""
        index, found = _lookup(self.category_ids,
                               np.arange(len(self.category_ids)),
                               np.array([category_id]))
        if not found[0]:
            return 0.0, 0, 0, 0
        index = index[0]
        return (float(self.iou[index]), int(self.tp[index]),
                int(self.fp[index]), int(self.fn[index]))


def _check_id_map(id_map: np.ndarray, name: str) -> np.ndarray:
    """Return ``id_map`` as a flat int64 array after validating it."""
    id_map = np.asarray(id_map)
    if id_map.ndim != 2 or not np.issubdtype(id_map.dtype, np.integer):
        raise ValueError(f'{name} must be a 2-D integer array, got shape '
                         f'{id_map.shape} and dtype {id_map.dtype}')
    id_map = id_map.astype(np.int64).ravel()
    if id_map.size and (id_map.min() < 0 or id_map.max() >= OFFSET):
        raise ValueError(f'{name} holds ids outside [0, {OFFSET}), which the '
                         'COCO panoptic PNG format cannot store: '
                         f'min {id_map.min()}, max {id_map.max()}')
    return id_map


def _segment_field(segments: Sequence[dict], key: str,
                   name: str) -> np.ndarray:
    """Collect ``key`` of every segment into an array, values as given
    (as panopticapi uses them: a float area stays a float).

    Raises:
        ValueError: If a segment lacks ``key`` or a value is not a number.
    """
    try:
        values = [segment[key] for segment in segments]
    except KeyError:
        raise ValueError(f'every segment of {name} needs the key {key!r}')
    if not values:
        return np.zeros(0, dtype=np.int64)
    array = np.asarray(values)
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        raise ValueError(f'{name}: {key!r} must be numbers, got '
                         f'{values[:3]!r}')
    return array


def _segment_ids(segments: Sequence[dict], name: str) -> np.ndarray:
    """Return the segment ids, checking that they are unique."""
    ids = _segment_field(segments, 'id', name)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f'{name} lists the segment ids '
                         f'{unique[counts > 1].tolist()} more than once')
    return ids


def _lookup(keys: np.ndarray, values: np.ndarray,
            queries: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Map ``queries`` through the table ``keys -> values``.

    Returns:
        tuple[np.ndarray, np.ndarray]: The mapped values (``values[0]`` where
        not found) and a mask of the queries found in ``keys``.
    """
    if len(keys) == 0:
        return (np.zeros(len(queries), dtype=values.dtype),
                np.zeros(len(queries), dtype=bool))
    order = np.argsort(keys)
    sorted_keys = keys[order]
    position = np.searchsorted(sorted_keys, queries)
    position = np.minimum(position, len(sorted_keys) - 1)
    found = sorted_keys[position] == queries
    return values[order][position], found


def single_image_pq_stats(pred_id_map: np.ndarray,
                          pred_segments: Sequence[dict], gt_id_map: np.ndarray,
                          gt_segments: Sequence[dict],
                          categories: Mapping[int, dict]) -> PanopticStats:
    """Match the segments of one image as panopticapi does.

    Args:
        pred_id_map (np.ndarray): Predicted segment id of every pixel,
            shape (H, W); pixels that no predicted segment claims must be
            ``VOID`` (0).
        pred_segments (Sequence[dict]): Predicted segments, each with
            ``'id'`` and ``'category_id'``; every listed id must occur in
            ``pred_id_map``.
        gt_id_map (np.ndarray): Ground-truth segment id of every pixel,
            shape (H, W); ``VOID`` (0) marks void pixels.
        gt_segments (Sequence[dict]): Ground-truth segments, each with
            ``'id'``, ``'category_id'``, ``'iscrowd'`` and ``'area'``.
        categories (Mapping[int, dict]): The known categories by id.

    Returns:
        PanopticStats: The per-category IoU sums and tp/fp/fn counts.

    Raises:
        ValueError: On malformed maps or segments, a predicted id missing from
            ``pred_segments`` or from ``pred_id_map``, or a predicted category
            missing from ``categories`` (panopticapi raises ``KeyError``).
    """
    pred_flat = _check_id_map(pred_id_map, 'pred_id_map')
    gt_flat = _check_id_map(gt_id_map, 'gt_id_map')
    if np.shape(pred_id_map) != np.shape(gt_id_map):
        raise ValueError(f'pred_id_map has shape {np.shape(pred_id_map)} but '
                         f'gt_id_map has shape {np.shape(gt_id_map)}')
    pred_ids = _segment_ids(pred_segments, 'pred_segments')
    pred_cats = _segment_field(pred_segments, 'category_id', 'pred_segments')
    gt_ids = _segment_ids(gt_segments, 'gt_segments')
    gt_cats = _segment_field(gt_segments, 'category_id', 'gt_segments')
    # panopticapi: ``iscrowd == 1`` on the value as given
    gt_crowd = _segment_field(gt_segments, 'iscrowd', 'gt_segments') == 1
    gt_area = _segment_field(gt_segments, 'area', 'gt_segments')
    num_pred, num_gt = len(pred_ids), len(gt_ids)

    # Rows: GT segments, then VOID unless a GT segment has id 0, then one row
    # for ids that no GT segment lists (never looked up by panopticapi).
    gt_void_row = int(np.flatnonzero(
        gt_ids == VOID)[0]) if (gt_ids == VOID).any() else num_gt
    gt_keys = np.append(gt_ids, VOID)
    gt_rows = np.append(np.arange(num_gt), gt_void_row)
    rows, found = _lookup(gt_keys, gt_rows, gt_flat)
    rows[~found] = num_gt + 1
    # Columns: predicted segments, then VOID unless a segment has id 0.
    pred_void_col = int(np.flatnonzero(
        pred_ids == VOID)[0]) if (pred_ids == VOID).any() else num_pred
    cols, found = _lookup(
        np.append(pred_ids, VOID),
        np.append(np.arange(num_pred), pred_void_col), pred_flat)
    if not found.all():
        raise ValueError(f'segment ids {np.unique(pred_flat[~found]).tolist()}'
                         ' occur in pred_id_map but not in pred_segments')
    intersection = np.bincount(
        rows * (num_pred + 1) + cols,
        minlength=(num_gt + 2) * (num_pred + 1)).reshape(
            num_gt + 2, num_pred + 1)

    pred_area = intersection[:, :num_pred].sum(0)
    if (pred_area == 0).any():
        raise ValueError(f'segment ids {pred_ids[pred_area == 0].tolist()} '
                         'are in pred_segments but not in pred_id_map')
    unknown = ~np.isin(pred_cats, np.fromiter(categories, dtype=np.int64))
    if unknown.any():
        raise ValueError(f'predicted segments {pred_ids[unknown].tolist()} '
                         f'have unknown category ids '
                         f'{pred_cats[unknown].tolist()}')

    category_ids = np.unique(
        np.concatenate([np.fromiter(categories, dtype=np.int64), gt_cats]))
    pred_cat_index = np.searchsorted(category_ids, pred_cats)
    gt_cat_index = np.searchsorted(category_ids, gt_cats)
    num_cats = len(category_ids)

    # True positives: IoU > 0.5 between non-crowd GT and same-category preds.
    inter = intersection[:num_gt, :num_pred]
    void_inter = intersection[gt_void_row, :num_pred]
    candidate = ((inter > 0) & ~gt_crowd[:, None]
                 & (gt_cats[:, None] == pred_cats[None, :]))
    union = (
        pred_area[None, :] + gt_area[:, None] - inter - void_inter[None, :])
    iou = np.zeros(inter.shape, dtype=np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou[candidate] = inter[candidate] / union[candidate]
    matched = candidate & (iou > 0.5)
    gt_row, pred_col = np.nonzero(matched)
    # Sum IoUs in panopticapi's order: by GT id, then by predicted id.
    order = np.lexsort((pred_ids[pred_col], gt_ids[gt_row]))
    gt_row, pred_col = gt_row[order], pred_col[order]
    tp = np.bincount(gt_cat_index[gt_row], minlength=num_cats)
    iou_sum = np.bincount(
        gt_cat_index[gt_row],
        weights=iou[gt_row, pred_col],
        minlength=num_cats).astype(np.float64)

    # False negatives: unmatched non-crowd GT segments. The last unmatched
    # crowd segment of each category is kept for the false-positive test.
    unmatched_gt = ~matched.any(1)
    fn = np.bincount(
        gt_cat_index[unmatched_gt & ~gt_crowd], minlength=num_cats)
    crowd_row = np.full(num_cats, -1, dtype=np.int64)
    crowd_rows = np.flatnonzero(unmatched_gt & gt_crowd)
    crowd_row[gt_cat_index[crowd_rows]] = crowd_rows

    # False positives: unmatched predictions not mostly on void or crowd.
    unmatched_pred = ~matched.any(0)
    ignored = void_inter.copy()
    pred_crowd_row = crowd_row[pred_cat_index]
    has_crowd = pred_crowd_row >= 0
    ignored[has_crowd] += inter[pred_crowd_row[has_crowd],
                                np.flatnonzero(has_crowd)]
    is_fp = unmatched_pred & ~(ignored / pred_area > 0.5)
    fp = np.bincount(pred_cat_index[is_fp], minlength=num_cats)
    return PanopticStats(
        category_ids=category_ids, iou=iou_sum, tp=tp, fp=fp, fn=fn)


def _sequential_sum(values: np.ndarray) -> float:
    """Sum left to right, as panopticapi's ``pq += pq_class`` loop does
    (``ndarray.sum`` adds pairwise, which differs in the last bit from
    eight values on)."""
    total = 0.0
    for value in values.tolist():
        total += value
    return total


def pq_average(stats: PanopticStats,
               categories: Mapping[int, dict]) -> Dict[str, Dict[str, float]]:
    """Average PQ, SQ and RQ over categories as ``PQStat.pq_average`` does.

    Args:
        stats (PanopticStats): Per-category counts.
        categories (Mapping[int, dict]): Categories by id, each with
            ``'isthing'``; a category counts as a thing when ``isthing == 1``.

    Returns:
        dict[str, dict[str, float]]: For each of ``'All'``, ``'Things'`` and
        ``'Stuff'``, the keys ``'pq'``, ``'sq'``, ``'rq'`` (fractions in
        [0, 1], NaN when no category has ``tp + fp + fn > 0``) and ``'n'``,
        the number of categories averaged.
    """
    category_ids = np.fromiter(categories, dtype=np.int64)
    is_thing = np.array(
        [categories[cat]['isthing'] == 1 for cat in categories], dtype=bool)
    index, present = _lookup(stats.category_ids,
                             np.arange(len(stats.category_ids)), category_ids)
    iou, tp, fp, fn = (
        np.where(present, values[index] if len(values) else 0,
                 0).astype(np.float64)
        for values in (stats.iou, stats.tp, stats.fp, stats.fn))
    counted = tp + fp + fn > 0
    denominator = np.where(counted, tp + 0.5 * fp + 0.5 * fn, 1.0)
    pq_class = iou / denominator
    sq_class = np.divide(iou, tp, out=np.zeros_like(iou), where=tp != 0)
    rq_class = tp / denominator

    results = {}
    for group, selected in zip(PQ_GROUPS,
                               (np.ones_like(is_thing), is_thing, ~is_thing)):
        selected = selected & counted
        n = int(selected.sum())
        results[group] = {
            name: _sequential_sum(values[selected]) / n if n else float('nan')
            for name, values in zip(PQ_METRICS, (pq_class, sq_class, rq_class))
        }
        results[group]['n'] = n
    return results


def single_image_pq(pred_id_map: np.ndarray, pred_segments: Sequence[dict],
                    gt_id_map: np.ndarray, gt_segments: Sequence[dict],
                    categories: Mapping[int, dict]) -> np.ndarray:
    """Compute the PQ, SQ and RQ of one image.

    Args:
        pred_id_map, pred_segments, gt_id_map, gt_segments, categories: See
            :func:`single_image_pq_stats`; every category needs
            ``'isthing'``.

    Returns:
        np.ndarray: Shape (3, 3), float64: rows ``PQ_GROUPS`` (All, Things,
        Stuff), columns ``PQ_METRICS`` (pq, sq, rq); NaN where a group has
        no category with ``tp + fp + fn > 0``.
    """
    stats = single_image_pq_stats(pred_id_map, pred_segments, gt_id_map,
                                  gt_segments, categories)
    results = pq_average(stats, categories)
    return np.array([[results[group][name] for name in PQ_METRICS]
                     for group in PQ_GROUPS])
