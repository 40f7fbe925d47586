# Copyright (c) The proscale Authors. All rights reserved.
"""The vectorised single-image PQ equals panopticapi's ``pq_compute``."""
import json
import math
import multiprocessing.pool
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import panopticapi.evaluation
import pytest
from panopticapi.evaluation import PQStat, pq_compute, pq_compute_single_core
from panopticapi.utils import id2rgb
from PIL import Image

from proscale.evaluation.single_image_pq import (
    PQ_GROUPS, PQ_METRICS, pq_average, single_image_pq, single_image_pq_stats)

CATEGORIES = {
    1: dict(id=1, name='person', isthing=1),
    3: dict(id=3, name='car', isthing=1),
    17: dict(id=17, name='cat', isthing=1),
    100: dict(id=100, name='sky', isthing=0),
    121: dict(id=121, name='road', isthing=0),
    184: dict(id=184, name='grass', isthing=0),
}
CAT_IDS = list(CATEGORIES)

Segments = List[dict]
Case = Tuple[np.ndarray, Segments, np.ndarray, Segments]


def _gt_segments(gt: np.ndarray, cats: Dict[int, int],
                 crowd: Dict[int, int]) -> Segments:
    """List the GT segments with the area counted on the map."""
    return [
        dict(
            id=int(seg_id),
            category_id=cats[seg_id],
            iscrowd=crowd.get(seg_id, 0),
            area=int((gt == seg_id).sum())) for seg_id in cats
    ]


def _random_case(rng: np.random.Generator) -> Case:
    """Draw a GT map and a perturbed prediction of it."""
    height, width = rng.integers(1, 24, size=2)
    gt = np.zeros((height, width), dtype=np.int64)
    gt_cats, crowd = {}, {}
    for _ in range(rng.integers(0, 7)):
        seg_id = int(rng.integers(1, 256**3))
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1 = rng.integers(y0 + 1, height + 1)
        x1 = rng.integers(x0 + 1, width + 1)
        gt[y0:y1, x0:x1] = seg_id
        gt_cats[seg_id] = int(rng.choice(CAT_IDS[:5]))
        if rng.random() < 0.25:
            crowd[seg_id] = 1
    if rng.random() < 0.3:
        # a tiny (one pixel) segment
        seg_id = int(rng.integers(1, 256**3))
        gt[rng.integers(0, height), rng.integers(0, width)] = seg_id
        gt_cats[seg_id] = int(rng.choice(CAT_IDS))
    gt_segments = _gt_segments(gt, gt_cats, crowd)

    # prediction: shifted GT with category noise, extra blobs and void
    shift = rng.integers(-2, 3, size=2) if rng.random() < 0.5 else (0, 0)
    pred_source = np.roll(gt, shift, axis=(0, 1))
    pred = np.zeros_like(gt)
    pred_cats = {}
    for index, seg_id in enumerate(np.unique(pred_source)):
        if seg_id == 0 or rng.random() < 0.15:
            continue
        cat = gt_cats[seg_id]
        if rng.random() < 0.2:
            cat = int(rng.choice(CAT_IDS))
        pred_id = cat + 1000 * (index + 1)
        pred[pred_source == seg_id] = pred_id
        pred_cats[pred_id] = cat
    for index in range(rng.integers(0, 3)):
        cat = int(rng.choice(CAT_IDS[1:]))  # 'person' only in GT
        pred_id = cat + 1000 * (100 + index)
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        pred[y0:y0 + rng.integers(1, 6), x0:x0 + rng.integers(1, 6)] = pred_id
        pred_cats[pred_id] = cat
    pred[rng.random(pred.shape) < 0.05] = 0
    present = set(np.unique(pred).tolist())
    pred_segments = [
        dict(id=pred_id, category_id=cat)
        for pred_id, cat in pred_cats.items() if pred_id in present
    ]
    return pred, pred_segments, gt, gt_segments


def _handmade_cases() -> List[Case]:
    """Edge cases: IoU exactly 0.5, crowd/void-covered false positives,
    empty GT segments, an image without segments and a GT id 0 segment."""
    cases = []
    # IoU exactly 0.5 (no match) next to IoU 0.75 (match)
    gt = np.array([[5, 5, 5, 5, 7, 7, 7, 7]])
    pred = np.array([[1003, 1003, 0, 0, 2100, 2100, 2100, 0]])
    cases.append(
        (pred, [dict(id=1003, category_id=3),
                dict(id=2100, category_id=100)], gt,
         _gt_segments(gt, {
             5: 3,
             7: 100
         }, {})))
    # a prediction mostly on void + crowd of its category is ignored; two
    # crowd segments of one category (the last one listed counts)
    gt = np.array([[0, 0, 9, 9, 11, 11, 4, 4, 4, 4]])
    pred = np.array([[1001, 1001, 1001, 1001, 1001, 2001, 2001, 2001, 0, 0]])
    cases.append(
        (pred, [dict(id=1001, category_id=1),
                dict(id=2001, category_id=1)], gt,
         _gt_segments(gt, {
             9: 1,
             11: 1,
             4: 121
         }, {
             9: 1,
             11: 1
         })))
    # an empty GT segment (area 0) and a stuff-only image
    gt = np.full((3, 4), 8)
    cases.append((np.full((3, 4), 121), [dict(id=121, category_id=121)], gt,
                  _gt_segments(gt, {
                      8: 121,
                      12: 184
                  }, {})))
    # no segments at all, on either side
    cases.append((np.zeros((4, 5), np.int64), [], np.zeros((4, 5),
                                                           np.int64), []))
    # predictions only, GT all void
    cases.append((np.full(
        (2, 2), 1017), [dict(id=1017,
                             category_id=17)], np.zeros((2, 2), np.int64), []))
    # GT and prediction segments with id 0 (they shadow VOID)
    gt = np.array([[0, 0, 0, 6, 6]])
    pred = np.array([[0, 0, 1003, 1003, 1003]])
    cases.append(
        (pred, [dict(id=0, category_id=100),
                dict(id=1003,
                     category_id=3)], gt, _gt_segments(gt, {
                         0: 100,
                         6: 3
                     }, {})))
    # GT pixels with an id that segments_info does not list
    gt = np.array([[13, 13, 14, 14, 14]])
    pred = np.array([[1003, 1003, 1003, 1003, 1003]])
    cases.append(
        (pred, [dict(id=1003,
                     category_id=3)], gt, _gt_segments(gt, {13: 3}, {})))
    return cases


def _write_png(path: Path, id_map: np.ndarray) -> None:
    Image.fromarray(id2rgb(id_map).astype(np.uint8)).save(path)


def _panopticapi_reference(
        case: Case,
        folder: Path,
        categories: Dict[int, dict] = CATEGORIES
) -> Tuple[np.ndarray, PQStat]:
    """Evaluate one image with panopticapi through files on disk.

    Returns:
        tuple[np.ndarray, PQStat]: pq_compute's (3, 3) results (NaN for the
        groups where panopticapi divides by zero) and its per-category stats.
    """
    pred, pred_segments, gt, gt_segments = case
    for name, id_map in (('gt', gt), ('pred', pred)):
        (folder / name).mkdir(parents=True)
        _write_png(folder / name / 'img.png', id_map)
    gt_json = dict(
        images=[dict(id=1, file_name='img.jpg')],
        categories=list(categories.values()),
        annotations=[
            dict(image_id=1, file_name='img.png', segments_info=gt_segments)
        ])
    pred_json = dict(annotations=[
        dict(image_id=1, file_name='img.png', segments_info=pred_segments)
    ])
    (folder / 'gt.json').write_text(json.dumps(gt_json))
    (folder / 'pred.json').write_text(json.dumps(pred_json))
    stats = pq_compute_single_core(
        0, [(gt_json['annotations'][0], pred_json['annotations'][0])],
        str(folder / 'gt'), str(folder / 'pred'), categories)
    try:
        results = pq_compute(
            str(folder / 'gt.json'), str(folder / 'pred.json'),
            str(folder / 'gt'), str(folder / 'pred'))
    except ZeroDivisionError:
        # pq_compute fails as a whole when a group has no category to
        # average; evaluate the groups one by one as pq_compute does.
        results = {}
        for group, isthing in zip(PQ_GROUPS, (None, True, False)):
            try:
                results[group] = stats.pq_average(categories, isthing)[0]
            except ZeroDivisionError:
                results[group] = dict(pq=math.nan, sq=math.nan, rq=math.nan)
    table = np.array([[results[group][name] for name in PQ_METRICS]
                      for group in PQ_GROUPS],
                     dtype=np.float64)
    return table, stats


def _cases() -> List[Case]:
    rng = np.random.default_rng(0)
    return _handmade_cases() + [_random_case(rng) for _ in range(30)]


@pytest.fixture
def in_process_pool(monkeypatch):
    """Run pq_compute's worker pool in threads (forking is slow)."""
    monkeypatch.setattr(panopticapi.evaluation.multiprocessing, 'Pool',
                        multiprocessing.pool.ThreadPool)


@pytest.mark.parametrize('case_index', range(len(_cases())))
def test_equals_panopticapi(case_index, tmp_path, capsys, in_process_pool):
    case = _cases()[case_index]
    expected, expected_stats = _panopticapi_reference(case, tmp_path)
    ours = single_image_pq(*case, CATEGORIES)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)
    assert np.array_equal(np.isnan(ours), np.isnan(expected))

    stats = single_image_pq_stats(*case, CATEGORIES)
    for cat_id in set(expected_stats.pq_per_cat) | set(CATEGORIES):
        ref = expected_stats[cat_id]
        iou, tp, fp, fn = stats.get(cat_id)
        assert (tp, fp, fn) == (ref.tp, ref.fp, ref.fn), cat_id
        assert iou == pytest.approx(ref.iou, abs=1e-12)


def test_cases_cover_edge_cases():
    """The generated cases hit every branch the comparison should cover."""
    tallies = dict(match=0, fp=0, fn=0, crowd=0, nan=0, tiny=0, void=0)
    for case in _cases():
        pred, pred_segments, gt, gt_segments = case
        stats = single_image_pq_stats(*case, CATEGORIES)
        tallies['match'] += int(stats.tp.sum() > 0)
        tallies['fp'] += int(stats.fp.sum() > 0)
        tallies['fn'] += int(stats.fn.sum() > 0)
        tallies['crowd'] += int(any(s['iscrowd'] for s in gt_segments))
        tallies['tiny'] += int(any(s['area'] == 1 for s in gt_segments))
        tallies['void'] += int((pred == 0).any() and (gt == 0).any())
        tallies['nan'] += int(
            np.isnan(single_image_pq(*case, CATEGORIES)).any())
    assert min(tallies.values()) >= 3, tallies


def test_pq_average_without_categories_is_nan():
    stats = single_image_pq_stats(
        np.zeros((2, 2), np.int64), [], np.zeros((2, 2), np.int64), [],
        CATEGORIES)
    results = pq_average(stats, CATEGORIES)
    assert all(results[group]['n'] == 0 for group in PQ_GROUPS)
    assert all(math.isnan(results[group]['pq']) for group in PQ_GROUPS)


@pytest.mark.parametrize('pred, pred_segments, message', [
    (np.array([[1003, 5]]), [dict(id=1003, category_id=3)
                             ], r'\[5\] occur in pred_id_map'),
    (np.array([[1003, 0]]),
     [dict(id=1003, category_id=3),
      dict(id=2003, category_id=3)], r'\[2003\] are in pred_segments but not'),
    (np.array([[1004, 0]]), [dict(id=1004, category_id=4)
                             ], 'unknown category ids'),
    (np.array([[1003, 1003]]),
     [dict(id=1003, category_id=3),
      dict(id=1003, category_id=3)], 'more than once'),
    (np.array([[256**3, 0]]), [dict(id=256**3, category_id=3)], 'outside'),
    (np.array([[1003, 0, 0]]), [dict(id=1003, category_id=3)], 'shape'),
    (np.array([[1003, 0]]), [dict(id=1003)], "'category_id'"),
])
def test_invalid_inputs_raise(pred, pred_segments, message):
    gt = np.array([[5, 5]])
    gt_segments = [dict(id=5, category_id=3, iscrowd=0, area=2)]
    with pytest.raises(ValueError, match=message):
        single_image_pq(pred, pred_segments, gt, gt_segments, CATEGORIES)


# Twelve categories (six things, six stuff): with eight or more categories
# to average, numpy's pairwise sum and panopticapi's sequential one can
# differ in the last bit.
MANY_CATEGORIES = {
    cat_id: dict(id=cat_id, name=f'c{cat_id}', isthing=int(cat_id < 40))
    for cat_id in (2, 5, 11, 17, 23, 31, 41, 47, 53, 61, 67, 71)
}


def _many_category_case(seed: int, float_areas: bool) -> Case:
    """Twelve GT rectangles of distinct categories on a 3 x 4 grid, each
    predicted shifted and cut by a few pixels (IoUs between 0.5 and 1)."""
    rng = np.random.default_rng(seed)
    gt, pred = np.zeros((36, 48), np.int64), np.zeros((36, 48), np.int64)
    gt_cats, pred_segments = {}, []
    for index, cat_id in enumerate(MANY_CATEGORIES):
        y, x = 12 * (index // 4), 12 * (index % 4)
        seg_id = 1000 + index
        gt[y:y + 12, x:x + 12] = seg_id
        gt_cats[seg_id] = cat_id
        dy, dx, cut = rng.integers(0, 3, size=3)
        pred[y + dy:y + 12, x + dx:x + 12 - cut] = 2000 + index
        pred_segments.append(dict(id=2000 + index, category_id=cat_id))
    gt_segments = _gt_segments(gt, gt_cats, {})
    if float_areas:
        # areas as a JSON file may give them; panopticapi uses them as is
        for segment in gt_segments:
            segment['area'] += 0.25
    return pred, pred_segments, gt, gt_segments


@pytest.mark.parametrize('float_areas', [False, True])
@pytest.mark.parametrize('seed', range(4))
def test_equals_panopticapi_bit_for_bit(seed, float_areas, tmp_path, capsys,
                                        in_process_pool):
    """Same floats as pq_compute on that single image, compared with ==."""
    case = _many_category_case(seed, float_areas)
    expected, expected_stats = _panopticapi_reference(case, tmp_path,
                                                      MANY_CATEGORIES)
    ours = single_image_pq(*case, MANY_CATEGORIES)
    assert not np.isnan(expected).any()
    assert ours.tolist() == expected.tolist()
    stats = single_image_pq_stats(*case, MANY_CATEGORIES)
    for cat_id in MANY_CATEGORIES:
        assert stats.get(cat_id)[0] == expected_stats[cat_id].iou
