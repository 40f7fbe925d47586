# Copyright (c) The proscale Authors. All rights reserved.
"""Per-image panoptic quality of mmdet predictions, as
``CocoPanopticMetric`` evaluates them.

mmdet's ``CocoPanopticMetric`` (with ``ann_file``, as the COCO panoptic
configs set it) writes each prediction to a PNG, reads it back together with
the ground-truth (GT) PNG and hands both, with their segment lists, to
panopticapi's ``pq_compute_single_core``. :class:`SingleImagePanopticEvaluator`
builds the same id maps and segment lists in memory and scores them with
:func:`~proscale.evaluation.single_image_pq.single_image_pq`, which
gives for each image what ``pq_compute`` would give on that image alone:

* predictions: :func:`prediction_to_coco_panoptic` mirrors
  ``CocoPanopticMetric._parse_predictions`` (one segment per panoptic id,
  category ``label2cat[id % INSTANCE_OFFSET]``, the ``num_classes`` /
  ``ignore_index`` label as ``VOID``);
* ground truth: the segments of an image come from the panoptic annotation
  file (``COCOPanoptic.imgToAnns``: ids, category ids, ``iscrowd`` and
  ``area`` as stored there) and its PNG is decoded as the metric decodes it
  (``mmcv.imfrombytes`` as RGB, then ``rgb2id``).
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmdet.datasets.api_wrappers import COCOPanoptic
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmengine.fileio import get, get_local_path
from mmengine.structures import PixelData
from panopticapi.evaluation import VOID
from panopticapi.utils import rgb2id

from .single_image_pq import single_image_pq


def prediction_to_coco_panoptic(
        pan_seg: np.ndarray,
        num_classes: int,
        label2cat: Optional[Mapping[int, int]] = None,
        ignore_index: Optional[int] = None) -> Tuple[np.ndarray, List[dict]]:
    """Convert an mmdet panoptic prediction to a COCO panoptic id map.

    Args:
        pan_seg (np.ndarray): mmdet's panoptic map (``pred_panoptic_seg.
            sem_seg[0]``), shape (H, W), each value
            ``label + instance_id * INSTANCE_OFFSET``.
        num_classes (int): Number of classes; label ``num_classes`` is void.
        label2cat (Mapping[int, int], optional): Contiguous label to
            category id. None keeps the labels.
        ignore_index (int, optional): A further void label
            (``pred_panoptic_seg.ignore_index``); defaults to
            ``num_classes``.

    Returns:
        tuple[np.ndarray, list[dict]]: The id map, shape (H, W), int64, with
        void pixels ``VOID``, and the segments (``'id'``,
        ``'category_id'``, ``'area'``).
    """
    pan_seg = np.asarray(pan_seg).astype(np.int64)
    ignore_index = num_classes if ignore_index is None else ignore_index
    labels = pan_seg % INSTANCE_OFFSET
    is_void = (labels == num_classes) | (labels == ignore_index)
    segment_ids, areas = np.unique(pan_seg[~is_void], return_counts=True)
    segments = []
    for segment_id, area in zip(segment_ids.tolist(), areas.tolist()):
        label = segment_id % INSTANCE_OFFSET
        segments.append(
            dict(
                id=segment_id,
                category_id=label2cat[label] if label2cat else label,
                area=area))
    return np.where(is_void, VOID, pan_seg), segments


class SingleImagePanopticEvaluator:
    """Score mmdet panoptic predictions image by image against a COCO
    panoptic annotation file.

    Args:
        ann_file (str): The panoptic annotation JSON file.
        classes (Sequence[str]): The data set's class names; their category
            ids, in the file's category order, define the contiguous labels
            (as in ``CocoPanopticDataset`` and ``CocoPanopticMetric``).
        backend_args (dict, optional): File backend arguments for the PNGs.
    """

    def __init__(self,
                 ann_file: str,
                 classes: Sequence[str],
                 backend_args: Optional[dict] = None) -> None:
        with get_local_path(ann_file, backend_args=backend_args) as path:
            self._coco = COCOPanoptic(path)
        self.backend_args = backend_args
        self.num_classes = len(classes)
        cat_ids = self._coco.get_cat_ids(cat_names=classes)
        if len(cat_ids) != len(classes):
            raise ValueError(
                f"{ann_file}: classes {list(classes)} do not all name a "
                'category of the file, whose categories are '
                f"{[cat['name'] for cat in self._coco.cats.values()]}")
        self.label2cat: Dict[int, int] = dict(enumerate(cat_ids))
        self.categories: Dict[int, dict] = self._coco.cats

    def load_ground_truth(self, image_id: int,
                          seg_map_path: str) -> Tuple[np.ndarray, List[dict]]:
        """Load the id map and the segments of one image.

        Args:
            image_id (int): The image id in the annotation file.
            seg_map_path (str): The image's panoptic PNG.

        Returns:
            tuple[np.ndarray, list[dict]]: The id map, shape (H, W), and the
            segments (``'id'``, ``'category_id'``, ``'iscrowd'``, ``'area'``
            ...) as stored in the annotation file.
        """
        bgr = mmcv.imfrombytes(
            get(seg_map_path, backend_args=self.backend_args),
            flag='color',
            channel_order='bgr')
        if bgr is None:
            raise ValueError(f'cannot decode the panoptic PNG {seg_map_path}')
        return rgb2id(bgr[..., ::-1]), self._coco.imgToAnns[image_id]

    def evaluate(self, image_id: int, seg_map_path: str,
                 predictions: Sequence[PixelData]) -> np.ndarray:
        """Score several panoptic predictions of one image.

        Args:
            image_id (int): The image id in the annotation file.
            seg_map_path (str): The image's panoptic PNG.
            predictions (Sequence[PixelData]): ``pred_panoptic_seg`` of each
                prediction, at the original image size.

        Returns:
            np.ndarray: Shape (P, 3, 3): for each prediction, rows All /
            Things / Stuff, columns PQ / SQ / RQ (see
            :func:`~proscale.evaluation.single_image_pq.
            single_image_pq`).
        """
        gt_ids, gt_segments = self.load_ground_truth(image_id, seg_map_path)
        tables = []
        for prediction in predictions:
            pred_ids, pred_segments = prediction_to_coco_panoptic(
                prediction.sem_seg[0].cpu().numpy(), self.num_classes,
                self.label2cat, prediction.get('ignore_index'))
            if pred_ids.shape != gt_ids.shape:
                raise ValueError(
                    f'image {image_id}: prediction of shape {pred_ids.shape} '
                    f'but ground truth {seg_map_path} of shape '
                    f'{gt_ids.shape}')
            tables.append(
                single_image_pq(pred_ids, pred_segments, gt_ids, gt_segments,
                                self.categories))
        return np.stack(tables) if tables else np.zeros((0, 3, 3))
