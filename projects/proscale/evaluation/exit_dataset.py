# Copyright (c) The proscale Authors. All rights reserved.
"""The ECO-M2F derived dataset: per-image quality at every encoder exit.

Step B of ECO-M2F runs the trained parent on every image at every exit and
records the image's quality there (panoptic quality for ``EcoMask2Former``,
COCO box AP for ``EcoDINO``); step C trains the exit gate from this file
alone. One file holds everything (see ``docs/eco_derived_dataset.md``).

File format: a NumPy ``.npz`` archive (zip of ``.npy`` arrays, no pickled
objects; read it with ``np.load(path, allow_pickle=False)`` or, with checks,
:func:`load_exit_dataset`):

===============  ==============  =======  =====================================
array            shape           dtype    content
===============  ==============  =======  =====================================
``image_ids``    (N, )           int64    image ids, strictly increasing
``exits``        (E, )           int64    exits (encoder layers), increasing
one per metric   (N, E, G)       float64  the metric of image i at exit j for
                                          each group (``meta['metrics']``,
                                          ``meta['groups']``)
``gate_inputs``  (N, C)          float32  the gate input of each image
``meta``         ()              str      JSON provenance record (below)
===============  ==============  =======  =====================================

The metrics and groups depend on the task (``meta['task']``):

* ``'panoptic'``: arrays ``pq``, ``sq``, ``rq``, groups All / Things /
  Stuff, computed per image exactly as panopticapi's ``pq_compute`` would
  on that image alone; NaN where a group has no category with
  ``tp + fp + fn > 0`` (e.g. Things of an image with neither GT nor
  predicted things; All is NaN only for an image with no GT and no
  predicted segment at that exit);
* ``'bbox'``: arrays ``ap``, ``ap50``, ``ap75``, group All, pycocotools'
  ``COCOeval`` box ``stats[0:3]`` on that image alone; NaN for an image
  without a non-crowd ground-truth box (pycocotools' -1).

Qualities are fractions in [0, 1]. Version 1 files (panoptic only) have no
``task``; their ``metrics`` / ``groups`` (when absent) are the panoptic ones.

Optional: ``layer1_gate_inputs`` (N, C), float32, the same pooling of the
tokens after the first encoder layer (``ExitGate(input_depth=1)``); files
without it (written before it existed, or by a model without it) load with
it None.

``meta`` keys: ``format`` (``'proscale-exit-dataset'``), ``format_version``,
``task``, ``exits``, ``groups``, ``metrics``, ``split``, ``dataset`` (type,
data_root, ann_file, data_prefix, classes, num_images), ``pipeline``,
``model``, ``checkpoint`` (path, sha256), ``gate_input``,
``gate_input_levels``, ``ground_truth``, ``code_version`` and ``config``
(the full config text).

Files are written atomically (temporary file in the same folder, then
``os.replace``), so a reader never sees a partial file.
"""
import json
import os.path as osp
import zipfile
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ..utils import atomic_open
from .single_image_pq import PQ_GROUPS, PQ_METRICS

EXIT_DATASET_FORMAT = 'proscale-exit-dataset'
# 2: any task (meta task, metrics and groups name the quality arrays);
# 1: panoptic only, still read.
EXIT_DATASET_VERSION = 2
READABLE_VERSIONS = (1, 2)
# The metrics and groups of a file whose meta does not name them.
GROUPS = PQ_GROUPS
METRICS = PQ_METRICS
_ARRAYS = ('image_ids', 'exits', 'gate_inputs', 'meta')
_OPTIONAL_ARRAYS = ('layer1_gate_inputs', )


class ExitDataset:
    """Per-image, per-exit quality and gate inputs.

    Args:
        image_ids (np.ndarray): Image ids, shape (N, ), int64.
        exits (np.ndarray): Exits, shape (E, ), int64, increasing.
        gate_inputs (np.ndarray): Gate inputs, shape (N, C), float32.
        meta (dict): Provenance record, JSON-serialisable; its ``'exits'``
            equals ``exits``; its ``'metrics'`` and ``'groups'`` name the
            qualities (default: the panoptic :data:`METRICS` and
            :data:`GROUPS`).
        layer1_gate_inputs (np.ndarray, optional): Gate inputs after the
            first encoder layer, shape (N, C), float32. Defaults to None.
        **qualities (np.ndarray): One array per metric, shape (N, E, G),
            e.g. ``pq=..., sq=..., rq=...``; each is an attribute.
    """

    def __init__(self,
                 *,
                 image_ids: np.ndarray,
                 exits: np.ndarray,
                 gate_inputs: np.ndarray,
                 meta: Dict[str, Any],
                 layer1_gate_inputs: Optional[np.ndarray] = None,
                 **qualities: np.ndarray) -> None:
        self.image_ids = np.asarray(image_ids, dtype=np.int64)
        self.exits = np.asarray(exits, dtype=np.int64)
        self.gate_inputs = np.asarray(gate_inputs, dtype=np.float32)
        self.meta = meta
        self.layer1_gate_inputs = None if layer1_gate_inputs is None else \
            np.asarray(layer1_gate_inputs, dtype=np.float32)
        if not isinstance(meta, dict):
            raise ValueError('exit dataset: meta must be a dict')
        unknown = sorted(set(qualities) - set(self.metrics))
        missing = sorted(set(self.metrics) - set(qualities))
        if unknown or missing:
            raise ValueError(
                f'exit dataset: quality arrays {sorted(qualities)} do not '
                f'match the metrics {list(self.metrics)} (missing {missing},'
                f' unknown {unknown})')
        for name, values in qualities.items():
            setattr(self, name, np.asarray(values, dtype=np.float64))
        self.validate()

    @property
    def metrics(self) -> Tuple[str, ...]:
        """tuple[str]: The quality metrics, one array each."""
        return tuple(self.meta.get('metrics', METRICS))

    @property
    def groups(self) -> Tuple[str, ...]:
        """tuple[str]: The groups, the last axis of every quality array."""
        return tuple(self.meta.get('groups', GROUPS))

    @property
    def task(self) -> str:
        """str: What the qualities score (``'panoptic'``, ``'bbox'``)."""
        return self.meta.get('task', 'panoptic')

    def qualities(self) -> Dict[str, np.ndarray]:
        """dict[str, np.ndarray]: Every metric's array, (N, E, G)."""
        return {name: getattr(self, name) for name in self.metrics}

    def validate(self, source: str = 'exit dataset') -> None:
        """Check shapes and consistency.

        Args:
            source (str): How to name the data in error messages.

        Raises:
            ValueError: On any inconsistency.
        """
        num, num_exits = len(self.image_ids), len(self.exits)
        problems = []
        if self.image_ids.ndim != 1 or self.exits.ndim != 1:
            problems.append('image_ids and exits must be 1-D')
        if num_exits == 0 or (np.diff(self.exits) <= 0).any():
            problems.append(f'exits {self.exits.tolist()} must be non-empty '
                            'and strictly increasing')
        expected = (num, num_exits, len(self.groups))
        for name in self.metrics:
            shape = getattr(self, name).shape
            if shape != expected:
                problems.append(
                    f'{name} has shape {shape}, expected {expected}')
        if self.gate_inputs.ndim != 2 or len(self.gate_inputs) != num:
            problems.append(f'gate_inputs has shape {self.gate_inputs.shape}'
                            f', expected ({num}, C)')
        if self.layer1_gate_inputs is not None and (
                self.layer1_gate_inputs.shape != self.gate_inputs.shape):
            problems.append('layer1_gate_inputs has shape '
                            f'{self.layer1_gate_inputs.shape}, expected '
                            f'that of gate_inputs {self.gate_inputs.shape}')
        if len(np.unique(self.image_ids)) != num:
            problems.append('image_ids are not unique')
        if self.meta.get('exits') != self.exits.tolist():
            problems.append('meta must be a dict whose "exits" equal exits')
        if problems:
            raise ValueError(f'{source}: ' + '; '.join(problems))

    def __len__(self) -> int:
        return len(self.image_ids)

    def quality(self,
                metric: Optional[str] = None,
                group: Optional[str] = None) -> np.ndarray:
        """Return one metric of one group for every image and exit.

        Args:
            metric (str, optional): One of :attr:`metrics` (e.g. 'pq', 'sq',
                'rq'; 'ap', 'ap50', 'ap75'). Defaults to the first.
            group (str, optional): One of :attr:`groups` (e.g. 'All',
                'Things', 'Stuff'). Defaults to the first.

        Returns:
            np.ndarray: Shape (N, E); column j belongs to ``exits[j]``.
        """
        metric = self.metrics[0] if metric is None else metric
        group = self.groups[0] if group is None else group
        if metric not in self.metrics or group not in self.groups:
            raise ValueError(
                f'metric must be one of {self.metrics} and group one of '
                f'{self.groups}, got {metric!r}, {group!r}')
        return getattr(self, metric)[:, :, self.groups.index(group)]

    @classmethod
    def concatenate(cls, parts: Sequence['ExitDataset'],
                    meta: Dict[str, Any]) -> 'ExitDataset':
        """Merge parts into one data set sorted by image id.

        Args:
            parts (Sequence[ExitDataset]): Parts with the same exits,
                metrics and gate input width and disjoint image ids.
            meta (dict): The merged data set's meta.

        Returns:
            ExitDataset: The merged data set.

        Raises:
            ValueError: If an image occurs in two parts or the parts differ
                in exits, metrics or gate input width.
        """
        exits = np.asarray(meta['exits'], dtype=np.int64)
        metrics = tuple(meta.get('metrics', METRICS))
        groups = tuple(meta.get('groups', GROUPS))
        for part in parts:
            if not np.array_equal(part.exits, exits):
                raise ValueError(f'cannot merge a part with exits '
                                 f'{part.exits.tolist()} into exits '
                                 f'{exits.tolist()}')
            if (part.metrics, part.groups) != (metrics, groups):
                raise ValueError(
                    f'cannot merge a part with metrics {part.metrics} of '
                    f'groups {part.groups} into {metrics} of {groups}')
        widths = {part.gate_inputs.shape[1] for part in parts if len(part)}
        if len(widths) > 1:
            raise ValueError(f'cannot merge gate inputs of widths {widths}')
        layer1 = {
            part.layer1_gate_inputs is not None
            for part in parts if len(part)
        }
        if len(layer1) > 1:
            raise ValueError('cannot merge parts with and without '
                             'layer1_gate_inputs')
        image_ids = np.concatenate([part.image_ids for part in parts]
                                   or [np.zeros(0, np.int64)])
        order = np.argsort(image_ids, kind='stable')
        image_ids = image_ids[order]
        repeated = image_ids[1:][np.diff(image_ids) == 0]
        if len(repeated):
            raise ValueError(f'images {np.unique(repeated).tolist()} occur '
                             'in more than one part')

        def stacked(name: str, empty_shape: tuple) -> np.ndarray:
            arrays = [getattr(part, name) for part in parts if len(part)]
            if not arrays:
                return np.zeros(empty_shape)
            return np.concatenate(arrays)[order]

        metric_shape = (0, len(exits), len(groups))
        width = widths.pop() if widths else 0
        return cls(
            image_ids=image_ids,
            exits=exits,
            gate_inputs=stacked('gate_inputs', (0, width)),
            layer1_gate_inputs=stacked('layer1_gate_inputs', (0, width))
            if layer1 == {True} else None,
            meta=meta,
            **{name: stacked(name, metric_shape)
               for name in metrics})

    def save(self, path: str) -> None:
        """Write the data set to ``path`` atomically.

        The data goes to a temporary file in the same folder, which then
        replaces ``path``: an existing file is never left half-written.

        Args:
            path (str): The output file (conventionally ``*.npz``).
        """
        optional = {} if self.layer1_gate_inputs is None else dict(
            layer1_gate_inputs=self.layer1_gate_inputs)
        with atomic_open(path, 'wb') as f:
            np.savez(
                f,
                image_ids=self.image_ids,
                exits=self.exits,
                gate_inputs=self.gate_inputs,
                meta=np.array(json.dumps(self.meta, sort_keys=True)),
                **self.qualities(),
                **optional)


def _read(path: str) -> ExitDataset:
    """Read an exit dataset file, turning every decoding error into a
    ``ValueError`` that names the file."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'exit dataset file not found: {path}')
    try:
        with np.load(path, allow_pickle=False) as archive:
            if 'meta' not in archive.files:
                raise ValueError("missing arrays ['meta']")
            meta = json.loads(str(archive['meta']))
            metrics = tuple(meta.get('metrics', METRICS)) if isinstance(
                meta, dict) else ()
            names = _ARRAYS + metrics
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise ValueError(f'missing arrays {missing}')
            arrays = {
                name: archive[name]
                for name in names + _OPTIONAL_ARRAYS
                if name in archive.files and name != 'meta'
            }
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f'{path} is not a readable exit dataset file '
            f'(corrupt, truncated or another format): {error}') from error
    if not isinstance(meta, dict) or meta.get('format') != EXIT_DATASET_FORMAT:
        raise ValueError(f'{path} is not an exit dataset file (meta.format '
                         f'is not {EXIT_DATASET_FORMAT!r})')
    if meta.get('format_version') not in READABLE_VERSIONS:
        raise ValueError(f"{path} has format version "
                         f"{meta.get('format_version')}; this code reads "
                         f'versions {list(READABLE_VERSIONS)}')
    try:
        return ExitDataset(meta=meta, **arrays)
    except ValueError as error:
        raise ValueError(
            f'{path}: inconsistent exit dataset: {error}') from error


def _same_value(key: str, stored: Any, expected: Any) -> bool:
    """Compare a stored dataset field with an expected one (paths are
    compared after normalisation)."""
    if key in ('ann_file', 'data_root') and isinstance(
            stored, str) and isinstance(expected, str):
        return osp.normpath(stored) == osp.normpath(expected)
    return json.loads(json.dumps(stored)) == json.loads(json.dumps(expected))


def load_exit_dataset(
        path: str,
        expected_exits: Optional[Iterable[int]] = None,
        expected_dataset: Optional[Dict[str, Any]] = None) -> ExitDataset:
    """Load and check a derived exit dataset.

    Args:
        path (str): The ``.npz`` file written by the derivation loop.
        expected_exits (Iterable[int], optional): The exits the caller works
            with (e.g. the parent model's ``exit_layers``); must equal the
            file's exits.
        expected_dataset (dict, optional): Fields the file's
            ``meta['dataset']`` must have, e.g. ``dict(ann_file=...,
            split='train')`` (``split`` is checked against
            ``meta['split']``; ``ann_file`` and ``data_root`` are compared as
            normalised paths).

    Returns:
        ExitDataset: The data set.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is corrupt, not an exit dataset, or does not
            match ``expected_exits`` / ``expected_dataset``.
    """
    dataset = _read(path)
    if expected_exits is not None:
        expected = sorted(int(k) for k in expected_exits)
        if dataset.exits.tolist() != expected:
            raise ValueError(f'{path} was derived for exits '
                             f'{dataset.exits.tolist()}, but exits {expected} '
                             'are expected')
    for key, value in (expected_dataset or {}).items():
        stored = dataset.meta.get('split') if key == 'split' else (
            dataset.meta.get('dataset', {}).get(key))
        if not _same_value(key, stored, value):
            raise ValueError(f'{path} was derived from a different dataset: '
                             f'{key} is {stored!r}, expected {value!r}')
    return dataset
