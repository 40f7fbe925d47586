# Copyright (c) The proscale Authors. All rights reserved.
import numpy as np
import pytest
import torch

from proscale.datasets import (ExitGateBatchSampler, ExitGateDataset,
                               exit_gate_collate)
from proscale.eco.exit_samples import (ExitSamples, load_exit_samples,
                                       split_samples)
from proscale.evaluation import ExitDataset
from proscale.evaluation.exit_dataset import (EXIT_DATASET_FORMAT,
                                              EXIT_DATASET_VERSION)

EXITS = (2, 4, 6)


@pytest.fixture(scope='module')
def derived(tmp_path_factory) -> str:
    """A derived file of 20 images with 2 gate input scales of 4 channels."""
    rng = np.random.default_rng(0)
    num = 20
    pq = rng.uniform(size=(num, len(EXITS), 3))
    pq[0, :, 0] = np.nan  # no segment at all: read as quality 1
    path = str(tmp_path_factory.mktemp('derived') / 'derived.npz')
    ExitDataset(
        image_ids=np.arange(100, 100 + num),
        exits=EXITS,
        pq=pq,
        sq=pq / 2,
        rq=pq,
        gate_inputs=rng.normal(size=(num, 8)).astype(np.float32),
        layer1_gate_inputs=rng.normal(size=(num, 8)),
        meta=dict(
            format=EXIT_DATASET_FORMAT,
            format_version=EXIT_DATASET_VERSION,
            exits=list(EXITS),
            gate_input_levels=2,
            checkpoint=dict(path='parent.pth', sha256='0' * 64))).save(path)
    return path


@pytest.mark.parametrize('split', ['train', 'val', 'all'])
def test_dataset_holds_the_split_of_split_samples(derived, split):
    dataset = ExitGateDataset(
        ann_file=derived, split=split, val_fraction=0.25, seed=3,
        metric='sq', input_levels=2, input_depth=1)
    samples = load_exit_samples(
        derived, 'sq', input_levels=2, input_depth=1)
    if split != 'all':
        train, val = split_samples(samples, 0.25, seed=3)
        samples = train if split == 'train' else val
    assert len(dataset) == len(samples)
    assert np.array_equal(dataset.samples.image_ids, samples.image_ids)
    batch = dataset[torch.tensor([1, 0])]
    assert torch.equal(batch['inputs'], samples.gate_inputs[[1, 0]])
    assert torch.equal(batch['quality'], samples.quality[[1, 0]])
    assert batch['quality'].dtype == torch.float64
    assert exit_gate_collate(batch) is batch
    meta = dataset.metainfo
    assert (meta['exits'], meta['in_channels'], meta['input_levels'],
            meta['input_depth']) == (EXITS, 8, 2, 1)
    assert meta['derived']['checkpoint']['path'] == 'parent.pth'
    mean, std = dataset.input_statistics()
    assert torch.allclose(mean, samples.gate_inputs.mean(0))
    assert mean.shape == std.shape == (8, )


def test_dataset_reads_one_scale_and_in_memory_samples(derived):
    dataset = ExitGateDataset(ann_file=derived)
    assert dataset[0]['inputs'].shape == (4, )
    assert dataset[0]['quality'][0] == 1.0  # NaN quality read as 1
    samples = ExitSamples(torch.ones(5, 3), torch.zeros(5, 2), (1, 2))
    in_memory = ExitGateDataset(samples=samples, split='val')
    assert len(in_memory) == 1
    assert in_memory.metainfo['derived']['path'] is None


def test_dataset_errors(derived):
    with pytest.raises(ValueError, match='exactly one of ann_file'):
        ExitGateDataset()
    with pytest.raises(ValueError, match="split must be one of"):
        ExitGateDataset(ann_file=derived, split='test')
    with pytest.raises(ValueError, match='3 encoder scales'):
        ExitGateDataset(ann_file=derived, input_levels=3)


def test_training_batches_are_reshuffled_passes():
    dataset = ExitGateDataset(
        samples=ExitSamples(torch.zeros(10, 2), torch.zeros(10, 1), (1, )))
    sampler = ExitGateBatchSampler(dataset, batch_size=4, seed=5)
    assert len(sampler) == 3
    iterator = iter(sampler)
    batches = [next(iterator) for _ in range(7)]
    # each pass: one permutation, its chunks last to first
    generator = torch.Generator().manual_seed(5)
    for start in (0, 3):
        chunks = torch.randperm(10, generator=generator).split(4)
        for got, expected in zip(batches[start:start + 3], chunks[::-1]):
            assert torch.equal(got, expected)
    assert torch.equal(batches[6], torch.randperm(
        10, generator=generator).split(4)[-1])
    # the same seed gives the same batches
    again = iter(ExitGateBatchSampler(dataset, batch_size=4, seed=5))
    assert all(torch.equal(next(again), b) for b in batches)


def test_evaluation_batches_are_one_ordered_pass():
    dataset = ExitGateDataset(
        samples=ExitSamples(torch.zeros(5, 2), torch.zeros(5, 1), (1, )))
    batches = list(ExitGateBatchSampler(dataset, batch_size=2, shuffle=False))
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match='batch_size must be a positive'):
        ExitGateBatchSampler(dataset, batch_size=0)
