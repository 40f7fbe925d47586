# Copyright (c) The proscale Authors. All rights reserved.
"""The exit gate's training data as an mmengine dataset (ECO-M2F step C).

:class:`ExitGateDataset` holds a derived exit dataset (step B's ``.npz``) in
memory. It is indexed with a whole batch of indices at once (an index
tensor, as :class:`ExitGateBatchSampler` yields them with the dataloader's
``batch_size=None``) and returns that batch already stacked, so one gate
step costs one tensor gather instead of one ``__getitem__`` per image and a
collate; :func:`exit_gate_collate` passes the batch through.
"""
import os.path as osp
from typing import Dict, Iterator, Optional, Tuple, Union

import torch
from mmdet.registry import DATA_SAMPLERS, DATASETS
from mmengine.registry import FUNCTIONS
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ..eco.exit_samples import ExitSamples, load_exit_samples, split_samples

SPLITS = ('train', 'val', 'all')


@DATASETS.register_module()
class ExitGateDataset(Dataset):
    """Gate inputs and per-exit quality of a derived exit dataset.

    Args:
        ann_file (str, optional): The derived exit dataset (``.npz`` of
            ``tools/eco/derive_exit_dataset.py``), relative to
            ``data_root``. Exactly one of ``ann_file`` and ``samples``.
        data_root (str): Folder of ``ann_file``. Defaults to ''.
        metric (str): Per-image quality the utility is built on, any metric
            the derived file holds (e.g. 'pq'). Defaults to 'pq'.
        group (str): Category group of the quality (e.g. 'All').
            Defaults to 'All'.
        input_levels (int): Encoder scales of the gate input, coarse to
            fine (see :func:`~proscale.eco.exit_samples.load_exit_samples`).
            Defaults to 1.
        input_depth (int): Encoder layers before the gate input (0 or 1).
            Defaults to 0.
        split (str): 'train' (the training share), 'val' (the held-out
            share) or 'all'. Defaults to 'all'.
        val_fraction (float): Held-out share of the split. Defaults to 0.2.
        seed (int): Seed of the split; the split equals
            :func:`~proscale.eco.exit_samples.split_samples`'. Defaults to 0.
        samples (ExitSamples, optional): Samples already in memory (the gate
            tools), instead of ``ann_file``; split as a file is.
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 data_root: str = '',
                 metric: str = 'pq',
                 group: str = 'All',
                 input_levels: int = 1,
                 input_depth: int = 0,
                 split: str = 'all',
                 val_fraction: float = 0.2,
                 seed: int = 0,
                 samples: Optional[ExitSamples] = None) -> None:
        if (ann_file is None) == (samples is None):
            raise ValueError(
                'ExitGateDataset needs exactly one of ann_file and samples')
        if split not in SPLITS:
            raise ValueError(
                f'ExitGateDataset: split must be one of {SPLITS}, got '
                f'{split!r}')
        if ann_file is not None:
            ann_file = osp.join(data_root, ann_file)
            samples = load_exit_samples(
                ann_file,
                metric,
                group,
                input_levels=input_levels,
                input_depth=input_depth)
        if split != 'all':
            train, val = split_samples(samples, val_fraction, seed)
            samples = train if split == 'train' else val
        self.ann_file = ann_file
        self.samples = samples
        self.metric = metric
        self.group = group
        self.input_levels = input_levels
        self.input_depth = input_depth

    @property
    def metainfo(self) -> dict:
        """dict: The exits, the gate input and where the samples come from
        (``derived``: the derived file's path, parent checkpoint and data
        set)."""
        meta = self.samples.meta or {}
        return dict(
            exits=self.samples.exits,
            in_channels=self.samples.gate_inputs.shape[1],
            input_levels=self.input_levels,
            input_depth=self.input_depth,
            metric=self.metric,
            group=self.group,
            derived=dict(
                path=None
                if self.ann_file is None else osp.abspath(self.ann_file),
                checkpoint=meta.get('checkpoint'),
                dataset=meta.get('dataset')))

    def input_statistics(self) -> Tuple[Tensor, Tensor]:
        """Per-channel mean and standard deviation of the gate inputs.

        Returns:
            tuple[Tensor, Tensor]: Mean and standard deviation (clamped to
            at least 1e-6), each of shape (C, ).
        """
        inputs = self.samples.gate_inputs
        return inputs.mean(dim=0), inputs.std(
            dim=0, unbiased=False).clamp(min=1e-6)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: Union[int, Tensor]) -> Dict[str, Tensor]:
        """Return one image or a batch of images.

        Args:
            index (int | Tensor): An image index, or a batch of them
                (shape (B, )).

        Returns:
            dict: ``inputs`` (gate inputs, shape (C, ) or (B, C), float32)
            and ``quality`` (per-exit quality, shape (E, ) or (B, E),
            float64).
        """
        return dict(
            inputs=self.samples.gate_inputs[index],
            quality=self.samples.quality[index])


@DATA_SAMPLERS.register_module()
class ExitGateBatchSampler(Sampler):
    """Batches of indices for :class:`ExitGateDataset`.

    Training (``shuffle=True``) draws endless reshuffled passes: every pass
    is a permutation from a private generator seeded by ``seed``, cut into
    ``batch_size`` chunks that are used last to first. Evaluation
    (``shuffle=False``) is one ordered pass. Use it as the dataloader's
    ``sampler`` with ``batch_size=None``, so the dataset gets each batch of
    indices at once.

    Args:
        dataset (ExitGateDataset): The dataset.
        batch_size (int): Images per batch. Defaults to 256.
        shuffle (bool): Endless reshuffled passes (True) or one ordered
            pass. Defaults to True.
        seed (int, optional): Seed of the permutations (the runner passes
            its seed). Defaults to 0.
    """

    def __init__(self,
                 dataset: ExitGateDataset,
                 batch_size: int = 256,
                 shuffle: bool = True,
                 seed: Optional[int] = 0) -> None:
        if isinstance(batch_size, bool) or not isinstance(
                batch_size, int) or batch_size < 1:
            raise ValueError(f'ExitGateBatchSampler: batch_size must be a '
                             f'positive int, got {batch_size!r}')
        if len(dataset) == 0:
            raise ValueError('ExitGateBatchSampler: the dataset is empty')
        self.num_samples = len(dataset)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = 0 if seed is None else seed

    def __iter__(self) -> Iterator[Tensor]:
        if not self.shuffle:
            yield from torch.arange(self.num_samples).split(self.batch_size)
            return
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            batches = list(
                torch.randperm(self.num_samples,
                               generator=generator).split(self.batch_size))
            while batches:
                yield batches.pop()

    def __len__(self) -> int:
        """int: Batches per pass."""
        return -(-self.num_samples // self.batch_size)


@FUNCTIONS.register_module()
def exit_gate_collate(batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Collate of :class:`ExitGateDataset`: the batch is already stacked.

    Args:
        batch (dict): A batch from :class:`ExitGateDataset`.

    Returns:
        dict: ``batch`` unchanged.
    """
    return batch
