# Copyright (c) The proscale Authors. All rights reserved.
"""The gate's training data: cached gate inputs and per-exit quality.

The derived dataset (ECO-M2F step B, ``tools/eco/derive_exit_dataset.py``)
stores, per image, the gate input (the pooled projected coarsest encoder
scale: 1/32 for Mask2Former, 1/64 for DINO) and the quality at every exit
(PQ/SQ/RQ, or box AP/AP50/AP75); :func:`load_exit_samples` reads what the
gate needs from it, so the gate trains without running the model.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..evaluation import load_exit_dataset


@dataclass
class ExitSamples:
    """Gate inputs and per-exit quality of a set of images.

    Args:
        gate_inputs (Tensor): Pooled gate features, shape (N, C).
        quality (Tensor): Quality (e.g. per-image PQ as a fraction) at every
            exit, shape (N, E), column ``j`` belonging to ``exits[j]``.
        exits (tuple[int]): The exits, strictly increasing.
        image_ids (np.ndarray, optional): Image ids, shape (N, ).
        meta (dict, optional): Provenance of the samples (the derived
            file's meta).
        metric (str, optional): The quality's metric (e.g. 'pq', 'ap').
        group (str, optional): The quality's group (e.g. 'All').
    """
    gate_inputs: Tensor
    quality: Tensor
    exits: Tuple[int, ...]
    image_ids: Optional[np.ndarray] = None
    meta: Optional[dict] = None
    metric: Optional[str] = None
    group: Optional[str] = None

    def __post_init__(self) -> None:
        self.gate_inputs = torch.as_tensor(
            self.gate_inputs, dtype=torch.float32)
        self.quality = torch.as_tensor(self.quality, dtype=torch.float64)
        self.exits = tuple(int(k) for k in self.exits)
        num = len(self.gate_inputs)
        if self.gate_inputs.dim() != 2:
            raise ValueError('gate_inputs must have shape (N, C), got '
                             f'{tuple(self.gate_inputs.shape)}')
        if self.quality.shape != (num, len(self.exits)):
            raise ValueError(
                f'quality must have shape ({num}, {len(self.exits)}) for '
                f'{num} images and exits {self.exits}, got '
                f'{tuple(self.quality.shape)}')
        for name in ('gate_inputs', 'quality'):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f'{name} holds NaN or infinite values')
        if self.image_ids is not None and len(self.image_ids) != num:
            raise ValueError(f'image_ids has {len(self.image_ids)} entries '
                             f'for {num} images')

    def __len__(self) -> int:
        return len(self.gate_inputs)

    def subset(self, index: Union[Tensor, np.ndarray]) -> 'ExitSamples':
        """Return the samples at ``index`` (an index array)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return ExitSamples(
            gate_inputs=self.gate_inputs[index],
            quality=self.quality[index],
            exits=self.exits,
            image_ids=None
            if self.image_ids is None else self.image_ids[index.numpy()],
            meta=self.meta,
            metric=self.metric,
            group=self.group)


def load_exit_samples(
        path: str,
        metric: Optional[str] = None,
        group: Optional[str] = None,
        expected_exits: Optional[Sequence[int]] = None,
        input_levels: int = 1,
        input_depth: int = 0) -> ExitSamples:
    """Load the gate's training data from a derived exit dataset file.

    A quality that is NaN is read as 1, a perfect prediction: panoptic (no
    category with ``tp + fp + fn > 0``: the image has no ground-truth
    segment of the group and the exit predicts none; predicting any segment
    there would give 0), or box AP of an image without ground-truth boxes
    (pycocotools leaves it undefined whatever is predicted; every exit is
    equally good).

    Args:
        path (str): A file written by ``tools/eco/derive_exit_dataset.py``.
        metric (str, optional): One of the file's metrics (``'pq'``,
            ``'sq'``, ``'rq'`` of a panoptic file; ``'ap'``, ``'ap50'``,
            ``'ap75'`` of a box file). Defaults to the file's first (PQ, the
            paper's; box AP).
        group (str, optional): One of the file's groups ('All', 'Things',
            'Stuff' of a panoptic file; 'All'). Defaults to the first.
        expected_exits (Sequence[int], optional): Exits the file must have.
        input_levels (int): Encoder scales of the gate input, coarse to
            fine: 1 (the coarsest scale, the authors' gate) up to the file's
            ``meta['gate_input_levels']`` (1 for files without it).
            Defaults to 1.
        input_depth (int): Encoder layers before the gate input: 0 (the
            projected tokens, ``gate_inputs``) or 1 (the tokens after the
            first layer, ``layer1_gate_inputs``). Defaults to 0.

    Returns:
        ExitSamples: Gate inputs, quality, image ids and meta of every image.
    """
    if input_depth not in (0, 1):
        raise ValueError(f'input_depth must be 0 or 1, got {input_depth!r}')
    dataset = load_exit_dataset(path, expected_exits)
    metric = dataset.metrics[0] if metric is None else metric
    group = dataset.groups[0] if group is None else group
    if metric not in dataset.metrics or group not in dataset.groups:
        raise ValueError(
            f'{path} holds metrics {list(dataset.metrics)} of groups '
            f'{list(dataset.groups)} ({dataset.task}), not {metric!r} of '
            f'{group!r}')
    inputs = dataset.gate_inputs
    if input_depth == 1:
        inputs = dataset.layer1_gate_inputs
        if inputs is None:
            raise ValueError(
                f'{path}: gate inputs after the first encoder layer asked '
                'for, the file has none (no layer1_gate_inputs); derive it '
                'again with this version')
    stored = int(dataset.meta.get('gate_input_levels', 1))
    if not 1 <= input_levels <= stored:
        raise ValueError(
            f'{path}: gate inputs of {input_levels} encoder scales asked for, '
            f'the file holds {stored} (meta.gate_input_levels); derive it '
            'again with this version to get every scale')
    width = inputs.shape[1] // stored * input_levels
    quality = np.nan_to_num(dataset.quality(metric, group), nan=1.0)
    return ExitSamples(
        gate_inputs=torch.from_numpy(inputs[:, :width]),
        quality=torch.from_numpy(quality),
        exits=tuple(dataset.exits.tolist()),
        image_ids=dataset.image_ids,
        meta=dataset.meta,
        metric=metric,
        group=group)


def split_samples(samples: ExitSamples,
                  val_fraction: float = 0.2,
                  seed: int = 0) -> Tuple[ExitSamples, ExitSamples]:
    """Split samples into a training and a held-out part, reproducibly.

    Args:
        samples (ExitSamples): All samples (at least 2).
        val_fraction (float): Share of held-out images, in (0, 1); at least
            one image goes to each part. Defaults to 0.2.
        seed (int): Seed of the permutation. Defaults to 0.

    Returns:
        tuple[ExitSamples, ExitSamples]: Training and held-out samples.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
    num = len(samples)
    if num < 2:
        raise ValueError(f'need at least 2 images to split, got {num}')
    num_val = min(max(int(round(num * val_fraction)), 1), num - 1)
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return samples.subset(perm[num_val:]), samples.subset(perm[:num_val])
