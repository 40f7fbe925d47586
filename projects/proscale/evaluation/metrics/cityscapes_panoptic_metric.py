# Copyright (c) The proscale Authors. All rights reserved.
"""Official Cityscapes panoptic quality (cityscapesscripts' evaluation)."""
import contextlib
import copy
import io
import json
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import (
    PQStat, average_pq, pq_compute_single_core)
from cityscapesscripts.helpers.labels import name2label
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.evaluation.metrics.coco_panoptic_metric import (
    parse_pq_results, print_panoptic_table)
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.utils import mkdir_or_exist
from panopticapi.utils import id2rgb
from PIL import Image

from ...datasets.cityscapes_panoptic import cityscapes_city

IMAGE_SUFFIX = '_leftImg8bit.png'
# One image's prediction (official format) and its statistics (None with
# ``format_only``).
ImageResult = Tuple[dict, Optional[PQStat]]


@METRICS.register_module()
class CityscapesPanopticMetric(BaseMetric):
    """Cityscapes panoptic quality as computed by cityscapesscripts.

    Predictions are written in the official result format (a PNG per image
    plus ``segments_info`` with Cityscapes label ids, e.g. ``person`` is 24)
    and matched against the official ground truth of
    ``cityscapesscripts.preparation.createPanopticImgs`` with the official
    per-image matching (``pq_compute_single_core``) and averaging
    (``average_pq``) of ``evalPanopticSemanticLabeling``. Per-image
    statistics are computed in :meth:`process`, so the metric works on a
    subset of the images and in distributed evaluation.

    Args:
        gt_json_file (str, optional): The official ground-truth JSON, e.g.
            ``data/cityscapes/gtFine/cityscapes_panoptic_val.json``.
            Required unless ``format_only``.
        gt_folder (str, optional): Its folder of ground-truth PNGs.
            Defaults to ``gt_json_file`` without ``.json`` (the official
            layout).
        outfile_prefix (str, optional): Keep the predictions: PNGs in the
            folder ``{outfile_prefix}/`` and ``{outfile_prefix}.json``, the
            official result format (``csEvalPanopticSemanticLabeling
            --prediction-json-file {outfile_prefix}.json`` reads them; so
            does the test server). Defaults to None (a temporary folder).
        format_only (bool): Only write the predictions (e.g. for the test
            split); needs ``outfile_prefix``. Defaults to False.
        classwise (bool): Also log the per-class PQ, SQ and RQ.
            Defaults to False.
        collect_device (str): Device used to collect results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Prefix of the metric names. Defaults to
            ``'cityscapes_panoptic'``.
    """
    default_prefix: Optional[str] = 'cityscapes_panoptic'

    def __init__(self,
                 gt_json_file: Optional[str] = None,
                 gt_folder: Optional[str] = None,
                 outfile_prefix: Optional[str] = None,
                 format_only: bool = False,
                 classwise: bool = False,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if format_only and outfile_prefix is None:
            raise ValueError('CityscapesPanopticMetric: format_only=True '
                             'needs outfile_prefix')
        self.format_only = format_only
        self.classwise = classwise
        self.outfile_prefix = outfile_prefix
        if outfile_prefix is None:
            self._tmp_dir = tempfile.TemporaryDirectory()
            self.pred_folder = self._tmp_dir.name
        else:
            self.pred_folder = outfile_prefix
        mkdir_or_exist(self.pred_folder)

        self.gt_annotations: Dict[str, dict] = {}
        self.categories: Dict[int, dict] = {}
        if not format_only:
            self._load_ground_truth(gt_json_file, gt_folder)
        self._label2cat: Optional[List[int]] = None

    def _load_ground_truth(self, gt_json_file: Optional[str],
                           gt_folder: Optional[str]) -> None:
        """Read the official ground-truth JSON and check its PNG folder."""
        if gt_json_file is None:
            raise ValueError('CityscapesPanopticMetric: gt_json_file is '
                             'required unless format_only=True')
        if not osp.isfile(gt_json_file):
            raise FileNotFoundError(
                f'CityscapesPanopticMetric: gt_json_file {gt_json_file} does '
                'not exist (see docs/datasets.md for the conversion)')
        self.gt_folder = gt_folder or osp.splitext(gt_json_file)[0]
        if not osp.isdir(self.gt_folder):
            raise FileNotFoundError(
                f'CityscapesPanopticMetric: gt_folder {self.gt_folder} does '
                'not exist')
        with open(gt_json_file) as f:
            gt_json = json.load(f)
        self.gt_json_file = gt_json_file
        self.gt_annotations = {
            annotation['image_id']: annotation
            for annotation in gt_json['annotations']
        }
        self.categories = {
            category['id']: category
            for category in gt_json['categories']
        }

    @property
    def label2cat(self) -> List[int]:
        """list[int]: The Cityscapes label id of each model label."""
        if self._label2cat is None:
            label2cat = []
            for name in self.dataset_meta['classes']:
                if name not in name2label:
                    raise ValueError(
                        f"CityscapesPanopticMetric: class '{name}' is not a "
                        'Cityscapes label')
                label2cat.append(name2label[name].id)
            self._label2cat = label2cat
        return self._label2cat

    def _to_official(self, pan_seg: np.ndarray, ignore_index: int,
                     image_id: str) -> dict:
        """Write one panoptic prediction in the official result format.

        Args:
            pan_seg (np.ndarray): mmdet's panoptic map, shape (H, W), values
                ``label + instance_id * INSTANCE_OFFSET``.
            ignore_index (int): The label of void pixels.
            image_id (str): The Cityscapes image id (``city_seq_frame``).

        Returns:
            dict: ``image_id``, ``file_name`` and ``segments_info`` (segment
            ids 1..N, Cityscapes label ids).
        """
        num_classes = len(self.dataset_meta['classes'])
        segment_map = np.zeros(pan_seg.shape, dtype=np.int64)
        segments_info = []
        for value in np.unique(pan_seg):
            label = int(value % INSTANCE_OFFSET)
            if label in (num_classes, ignore_index):
                continue
            segment_id = len(segments_info) + 1
            segment_map[pan_seg == value] = segment_id
            segments_info.append(
                dict(id=segment_id, category_id=self.label2cat[label]))
        file_name = f'{image_id}_panoptic.png'
        Image.fromarray(id2rgb(segment_map)).save(
            osp.join(self.pred_folder, file_name))
        return dict(
            image_id=image_id,
            file_name=file_name,
            segments_info=segments_info)

    @staticmethod
    def _image_id(img_path: str) -> str:
        """Return the Cityscapes image id of an image path."""
        cityscapes_city(img_path)  # ValueError unless a Cityscapes name
        return osp.basename(img_path)[:-len(IMAGE_SUFFIX)]

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Write the predictions and compute their per-image statistics.

        Args:
            data_batch (dict): A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Predictions with
                ``pred_panoptic_seg`` and the image's ``img_path``.
        """
        for data_sample in data_samples:
            image_id = self._image_id(data_sample['img_path'])
            pred = data_sample['pred_panoptic_seg']
            prediction = self._to_official(
                pred['sem_seg'].cpu().numpy()[0],
                pred.get('ignore_index', len(self.dataset_meta['classes'])),
                image_id)
            pq_stat = None
            if not self.format_only:
                pq_stat = self._image_pq_stat(prediction)
            self.results.append((prediction, pq_stat))

    def _image_pq_stat(self, prediction: dict) -> PQStat:
        """Match one prediction to its ground truth (official code)."""
        image_id = prediction['image_id']
        if image_id not in self.gt_annotations:
            raise KeyError(f"CityscapesPanopticMetric: image '{image_id}' "
                           f'is not in {self.gt_json_file}')
        # The official code adds numpy areas to the segments (kept out of
        # the saved predictions) and reports progress on stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            return pq_compute_single_core(
                0,
                [(self.gt_annotations[image_id], copy.deepcopy(prediction))],
                self.gt_folder, self.pred_folder, self.categories)

    def compute_metrics(self,
                        results: List[ImageResult]) -> Dict[str, float]:
        """Average the per-image statistics into PQ, SQ and RQ.

        Args:
            results (list[tuple[dict, PQStat]]): Predictions and their
                statistics from all ranks.

        Returns:
            dict[str, float]: ``PQ``, ``SQ``, ``RQ`` and their ``_th`` and
            ``_st`` variants, in percent; empty with ``format_only``.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        if self.outfile_prefix is not None:
            json_file = f'{self.outfile_prefix}.json'
            with open(json_file, 'w') as f:
                json.dump(dict(annotations=[pred for pred, _ in results]), f)
            logger.info(f'Cityscapes panoptic predictions saved to '
                        f'{json_file} and {self.pred_folder}/')
        if self.format_only:
            return dict()

        pq_stat = PQStat()
        for _, image_stat in results:
            pq_stat += image_stat
        if len(results) < len(self.gt_annotations):
            logger.warning(
                f'Cityscapes panoptic quality over {len(results)} of the '
                f'{len(self.gt_annotations)} images of {self.gt_json_file}')
        pq_results = average_pq(pq_stat, self.categories)
        classwise_results = None
        if self.classwise:
            classwise_results = {
                self.categories[category_id]['name']: stats
                for category_id, stats in pq_results['per_class'].items()
            }
        print_panoptic_table(pq_results, classwise_results, logger=logger)
        return parse_pq_results(pq_results)
