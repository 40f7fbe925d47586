# Copyright (c) The proscale Authors. All rights reserved.
"""The derived exit dataset file: round trip, merging and clear errors."""
import json
import os

import numpy as np
import pytest

from proscale.evaluation import ExitDataset, load_exit_dataset
from proscale.evaluation.exit_dataset import (EXIT_DATASET_FORMAT,
                                              EXIT_DATASET_VERSION)

EXITS = [2, 3, 4, 5, 6]


def _dataset(image_ids, exits=EXITS, channels=4, seed=0) -> ExitDataset:
    rng = np.random.default_rng(seed)
    num = len(image_ids)
    metrics = rng.random((3, num, len(exits), 3))
    if num:
        metrics[0, 0, 0, 1] = np.nan  # e.g. Things of an image without things
    return ExitDataset(
        image_ids=image_ids,
        exits=exits,
        pq=metrics[0],
        sq=metrics[1],
        rq=metrics[2],
        gate_inputs=rng.standard_normal((num, channels)),
        meta=dict(
            format=EXIT_DATASET_FORMAT,
            format_version=EXIT_DATASET_VERSION,
            exits=list(exits),
            split='train',
            dataset=dict(
                ann_file='data/synthetic/annotations/panoptic_train.json',
                num_images=num)))


def _assert_same(a: ExitDataset, b: ExitDataset) -> None:
    for name in ('image_ids', 'exits', 'pq', 'sq', 'rq', 'gate_inputs'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.meta == b.meta


def test_round_trip_and_quality(tmp_path):
    data = _dataset([3, 7, 9])
    path = tmp_path / 'derived.npz'
    data.save(str(path))
    assert os.listdir(tmp_path) == ['derived.npz']  # no temporary left
    loaded = load_exit_dataset(
        str(path),
        expected_exits=EXITS,
        expected_dataset=dict(
            split='train',
            ann_file='data/synthetic/annotations/../annotations/'
            'panoptic_train.json'))
    _assert_same(loaded, data)
    assert loaded.gate_inputs.dtype == np.float32
    assert loaded.quality('sq', 'Things').shape == (3, 5)
    np.testing.assert_array_equal(
        loaded.quality('rq', 'Stuff'), data.rq[:, :, 2])
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(str(archive['meta']))['exits'] == EXITS
    with pytest.raises(ValueError, match='metric must be one of'):
        loaded.quality('ap', 'All')


def test_concatenate_sorts_and_rejects_duplicates():
    parts = [
        _dataset([5, 1], seed=1),
        _dataset([], seed=2),
        _dataset([3], seed=3)
    ]
    merged = ExitDataset.concatenate(parts, parts[0].meta)
    assert merged.image_ids.tolist() == [1, 3, 5]
    np.testing.assert_array_equal(merged.pq[0], parts[0].pq[1])
    np.testing.assert_array_equal(merged.gate_inputs[1],
                                  parts[2].gate_inputs[0])
    with pytest.raises(ValueError, match=r'images \[5\] occur in more'):
        ExitDataset.concatenate([parts[0], _dataset([5])], parts[0].meta)
    with pytest.raises(ValueError, match='cannot merge a part with exits'):
        ExitDataset.concatenate([_dataset([1], exits=[2, 6])], parts[0].meta)


def test_layer1_gate_inputs_are_optional(tmp_path):
    old = _dataset([1, 2])
    old.save(str(tmp_path / 'old.npz'))
    assert load_exit_dataset(str(tmp_path / 'old.npz')).layer1_gate_inputs \
        is None
    new = _dataset([3, 4], seed=1)
    new.layer1_gate_inputs = new.gate_inputs + 1
    new.save(str(tmp_path / 'new.npz'))
    loaded = load_exit_dataset(str(tmp_path / 'new.npz'))
    np.testing.assert_array_equal(loaded.layer1_gate_inputs,
                                  new.gate_inputs + 1)
    merged = ExitDataset.concatenate([loaded, _dataset([], seed=2)],
                                     new.meta)
    np.testing.assert_array_equal(merged.layer1_gate_inputs,
                                  loaded.layer1_gate_inputs)
    with pytest.raises(ValueError, match='with and without'):
        ExitDataset.concatenate([old, loaded], new.meta)
    with pytest.raises(ValueError, match='layer1_gate_inputs has shape'):
        ExitDataset(**dict(vars(old), layer1_gate_inputs=np.zeros((2, 3))))


def test_mismatched_expectations_raise(tmp_path):
    path = str(tmp_path / 'derived.npz')
    _dataset([1, 2]).save(path)
    with pytest.raises(
            ValueError,
            match=r'derived for exits \[2, 3, 4, 5, 6'
            r'\], but exits \[2, 4, 6\] are expected'):
        load_exit_dataset(path, expected_exits=[6, 4, 2])
    with pytest.raises(ValueError, match='different dataset: split'):
        load_exit_dataset(path, expected_dataset=dict(split='val'))
    with pytest.raises(ValueError, match='different dataset: ann_file'):
        load_exit_dataset(
            path, expected_dataset=dict(ann_file='coco/panoptic_train.json'))


def test_corrupt_or_foreign_files_raise(tmp_path):
    path = tmp_path / 'derived.npz'
    _dataset([1, 2, 3]).save(str(path))
    content = path.read_bytes()

    truncated = tmp_path / 'truncated.npz'
    truncated.write_bytes(content[:len(content) // 2])
    garbage = tmp_path / 'garbage.npz'
    garbage.write_bytes(b'\x00' * 64)
    other = tmp_path / 'other.npz'
    np.savez(other, image_ids=np.arange(3))
    foreign = tmp_path / 'foreign.npz'
    arrays = dict(np.load(path, allow_pickle=False))
    np.savez(foreign, **{**arrays, 'meta': np.array('{"format": "x"}')})
    inconsistent = tmp_path / 'inconsistent.npz'
    np.savez(inconsistent, **{**arrays, 'pq': arrays['pq'][:2]})
    for bad, message in ((truncated, 'not a readable exit dataset'),
                         (garbage, 'not a readable exit dataset'),
                         (other, 'missing arrays'),
                         (foreign, 'not an exit dataset file'),
                         (inconsistent, 'pq has shape')):
        with pytest.raises(ValueError, match=message) as error:
            load_exit_dataset(str(bad))
        assert str(bad) in str(error.value)
    with pytest.raises(FileNotFoundError, match='not found'):
        load_exit_dataset(str(tmp_path / 'missing.npz'))


def test_failed_save_keeps_existing_file(tmp_path, monkeypatch):
    path = tmp_path / 'derived.npz'
    _dataset([1]).save(str(path))
    before = path.read_bytes()

    def failing_savez(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(np, 'savez', failing_savez)
    with pytest.raises(OSError, match='disk full'):
        _dataset([1, 2]).save(str(path))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['derived.npz']
