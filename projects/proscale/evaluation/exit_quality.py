# Copyright (c) The proscale Authors. All rights reserved.
"""Per-image quality of an early-exit model's predictions, one per task.

ECO-M2F's step B scores every image at every exit, and the oracle of
``ExitPolicyTestLoop`` picks each image's best exit by the same score. An
:class:`ExitQualityEvaluator` gives that score for one task, built from the
split's dataset: :class:`PanopticExitQuality` (PQ / SQ / RQ of All /
Things / Stuff, as ``CocoPanopticMetric`` on that image alone) for
``EcoMask2Former``, :class:`BoxExitQuality` (COCO box AP / AP50 / AP75, as
pycocotools' ``COCOeval`` on that image alone) for ``EcoDINO``. The model
names its task (``exit_quality_task``); :func:`build_exit_quality` builds
the evaluator.
"""
from abc import ABCMeta, abstractmethod
from typing import Dict, Sequence, Tuple, Type

import numpy as np
from mmdet.datasets.api_wrappers import COCO
from mmdet.structures import DetDataSample
from mmengine.fileio import get_local_path

from .single_image_box_ap import BOX_STATS, MAX_DETS, single_image_box_stats
from .single_image_panoptic_evaluator import SingleImagePanopticEvaluator
from .single_image_pq import PQ_GROUPS, PQ_METRICS


class ExitQualityEvaluator(metaclass=ABCMeta):
    """Scores one image's predictions at several exits.

    Subclasses set :attr:`task`, :attr:`metrics`, :attr:`groups` and
    :attr:`ground_truth` (a description for the derived file's meta) and
    implement :meth:`evaluate`.

    Args:
        dataset: The split's dataset, fully initialised (``full_init``).
    """

    task: str
    metrics: Tuple[str, ...]
    groups: Tuple[str, ...]
    ground_truth: str

    @abstractmethod
    def __init__(self, dataset) -> None:
        """Read the split's ground truth."""

    @abstractmethod
    def evaluate(self, image_id: int,
                 predictions: Sequence[DetDataSample]) -> np.ndarray:
        """Score predictions of one image.

        Args:
            image_id (int): The image id in the annotation file.
            predictions (Sequence[:obj:`DetDataSample`]): The image's
                predictions at each exit, at the original image size.

        Returns:
            np.ndarray: Shape (P, len(groups), len(metrics)), float64,
            fractions in [0, 1]; NaN where the quality is undefined.
        """

    @staticmethod
    def _data_infos(dataset, keys: Sequence[str]) -> list:
        """Every image's data info, checking that ``keys`` are set."""
        infos = [dataset.get_data_info(i) for i in range(len(dataset))]
        missing = [
            key for key in keys
            if any(info.get(key) is None for info in infos)
        ]
        if missing or not getattr(dataset, 'ann_file', None):
            raise ValueError(
                f"dataset '{type(dataset).__name__}' must give every image "
                f"{' and '.join(keys)} and have an ann_file (missing: "
                f'{missing or ["ann_file"]})')
        return infos


class PanopticExitQuality(ExitQualityEvaluator):
    """Per-image PQ, SQ and RQ, as ``CocoPanopticMetric(ann_file=...)``
    computes them for a data set made of that image
    (:class:`SingleImagePanopticEvaluator`).

    Args:
        dataset: A ``CocoPanopticDataset``-like dataset with a panoptic
            ``ann_file`` and every image's ``img_id`` and ``seg_map_path``.
    """

    task = 'panoptic'
    metrics = PQ_METRICS
    groups = PQ_GROUPS
    ground_truth = (
        "segments_info of the split's panoptic ann_file and the PNG at each "
        "image's seg_map_path, as CocoPanopticMetric(ann_file=...) evaluates "
        'them; predictions as its _parse_predictions converts them; per '
        "image as panopticapi's pq_compute")

    def __init__(self, dataset) -> None:
        infos = self._data_infos(dataset, ('img_id', 'seg_map_path'))
        self.seg_map_paths: Dict[int, str] = {
            int(info['img_id']): info['seg_map_path']
            for info in infos
        }
        self.evaluator = SingleImagePanopticEvaluator(
            dataset.ann_file,
            dataset.metainfo['classes'],
            backend_args=getattr(dataset, 'backend_args', None))

    def evaluate(self, image_id: int,
                 predictions: Sequence[DetDataSample]) -> np.ndarray:
        """Score ``pred_panoptic_seg`` of each prediction (see
        :meth:`ExitQualityEvaluator.evaluate`): shape (P, 3, 3), groups All /
        Things / Stuff, metrics PQ / SQ / RQ."""
        # (P, groups, metrics)
        return self.evaluator.evaluate(
            image_id, self.seg_map_paths[image_id],
            [prediction.pred_panoptic_seg for prediction in predictions])


class BoxExitQuality(ExitQualityEvaluator):
    """Per-image COCO box AP, AP50 and AP75, as pycocotools' ``COCOeval``
    (``iouType='bbox'``) reports them (``stats[0:3]``) for a data set made
    of that image.

    The inputs are those of mmdet's ``CocoMetric(ann_file=...)``: the
    image's annotations of the dataset's classes in the instances
    ``ann_file`` (``bbox``, ``category_id``, ``iscrowd``), and the
    predicted boxes converted as its ``results2json`` converts them
    (``xyxy2xywh``, the label's category id, the score as a float). An
    image without a non-crowd ground-truth box of those classes has no AP
    (pycocotools' -1): NaN.

    Args:
        dataset: A ``CocoDataset``-like dataset with an instances
            ``ann_file`` and every image's ``img_id``.
        max_dets (int): Best-scored detections per category,
            pycocotools' default 100 (mmdet's ``CocoMetric`` evaluates with
            ``maxDets=(100, 300, 1000)`` and reports AP50 / AP75 at 1000;
            the two differ only for images with more than 100 detections of
            one category).
    """

    task = 'bbox'
    metrics = BOX_STATS
    groups = ('All', )
    ground_truth = (
        "the image's annotations of the dataset's classes in the split's "
        'instances ann_file (bbox, category_id, iscrowd), as CocoMetric('
        'ann_file=...) evaluates them; predictions as its results2json '
        "converts them; per image as pycocotools' COCOeval (bbox) stats[0:3]"
        ' (AP, AP50, AP75; area all, 100 detections)')

    def __init__(self, dataset, max_dets: int = MAX_DETS) -> None:
        infos = self._data_infos(dataset, ('img_id', ))
        with get_local_path(
                dataset.ann_file,
                backend_args=getattr(dataset, 'backend_args', None)) as path:
            coco = COCO(path)
        classes = dataset.metainfo['classes']
        cat_ids = coco.get_cat_ids(cat_names=classes)
        if len(cat_ids) != len(classes):
            raise ValueError(
                f'{dataset.ann_file}: classes {list(classes)} do not all name '
                'a category of the file, whose categories are '
                f"{[cat['name'] for cat in coco.cats.values()]}")
        self.cat_ids = list(cat_ids)
        self.max_dets = max_dets
        self.ground_truths: Dict[int, Tuple[np.ndarray, ...]] = {}
        for info in infos:
            image_id = int(info['img_id'])
            anns = coco.load_anns(
                coco.get_ann_ids(img_ids=[image_id], cat_ids=self.cat_ids))
            self.ground_truths[image_id] = (
                np.array([ann['bbox'] for ann in anns],
                         dtype=np.float64).reshape(-1, 4),
                np.array([ann['category_id'] for ann in anns],
                         dtype=np.int64),
                np.array([bool(ann.get('iscrowd', 0)) for ann in anns],
                         dtype=bool))

    def evaluate(self, image_id: int,
                 predictions: Sequence[DetDataSample]) -> np.ndarray:
        """Score ``pred_instances`` of each prediction (see
        :meth:`ExitQualityEvaluator.evaluate`): shape (P, 1, 3), group All,
        metrics AP / AP50 / AP75."""
        gt_bboxes, gt_labels, gt_iscrowd = self.ground_truths[image_id]
        tables = []
        for prediction in predictions:
            instances = prediction.pred_instances
            bboxes = instances.bboxes.cpu().numpy()
            # CocoMetric.xyxy2xywh on float32 boxes, in Python floats
            det_bboxes = np.array(
                [[b[0], b[1], b[2] - b[0], b[3] - b[1]]
                 for b in bboxes.tolist()],
                dtype=np.float64).reshape(-1, 4)
            det_scores = np.array(
                [float(s) for s in instances.scores.cpu().numpy()],
                dtype=np.float64)
            det_labels = np.array(
                [self.cat_ids[label] for label in instances.labels.tolist()],
                dtype=np.int64)
            stats = single_image_box_stats(gt_bboxes, gt_labels, det_bboxes,
                                           det_scores, det_labels, gt_iscrowd,
                                           self.max_dets)
            tables.append(np.where(stats < 0, np.nan, stats)[None])
        return np.stack(tables) if tables else np.zeros(
            (0, len(self.groups), len(self.metrics)))


EXIT_QUALITY: Dict[str, Type[ExitQualityEvaluator]] = {
    cls.task: cls
    for cls in (PanopticExitQuality, BoxExitQuality)
}


def build_exit_quality(task: str, dataset) -> ExitQualityEvaluator:
    """Build the per-image quality evaluator of a task.

    Args:
        task (str): A key of :data:`EXIT_QUALITY` (``'panoptic'``,
            ``'bbox'``), e.g. the model's ``exit_quality_task``.
        dataset: The split's dataset, fully initialised.

    Returns:
        ExitQualityEvaluator: The evaluator.
    """
    if task not in EXIT_QUALITY:
        raise ValueError(f'no per-image quality for task {task!r}; known: '
                         f'{sorted(EXIT_QUALITY)}')
    return EXIT_QUALITY[task](dataset)
