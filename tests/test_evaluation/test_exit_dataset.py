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


def _box_dataset(image_ids, seed=0) -> ExitDataset:
    rng = np.random.default_rng(seed)
    num = len(image_ids)
    return ExitDataset(
        image_ids=image_ids,
        exits=EXITS,
        ap=rng.random((num, len(EXITS), 1)),
        ap50=rng.random((num, len(EXITS), 1)),
        ap75=rng.random((num, len(EXITS), 1)),
        gate_inputs=rng.standard_normal((num, 8)),
        meta=dict(
            format=EXIT_DATASET_FORMAT,
            format_version=EXIT_DATASET_VERSION,
            task='bbox',
            metrics=['ap', 'ap50', 'ap75'],
            groups=['All'],
            exits=list(EXITS)))


def test_box_file_round_trip(tmp_path):
    data = _box_dataset([4, 2])
    path = str(tmp_path / 'derived.npz')
    data.save(path)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == [
            'ap', 'ap50', 'ap75', 'exits', 'gate_inputs', 'image_ids', 'meta'
        ]
    loaded = load_exit_dataset(path)
    assert (loaded.task, loaded.metrics, loaded.groups) == ('bbox', (
        'ap', 'ap50', 'ap75'), ('All', ))
    np.testing.assert_array_equal(loaded.quality('ap50'), data.ap50[:, :, 0])
    np.testing.assert_array_equal(loaded.quality(), data.ap[:, :, 0])
    with pytest.raises(ValueError, match='metric must be one of'):
        loaded.quality('pq', 'All')
    merged = ExitDataset.concatenate([loaded, _box_dataset([1], seed=1)],
                                     loaded.meta)
    assert merged.image_ids.tolist() == [1, 2, 4]
    with pytest.raises(ValueError, match='cannot merge a part with metrics'):
        ExitDataset.concatenate([loaded, _dataset([1])], loaded.meta)
    without_ap75 = {k: v for k, v in vars(data).items() if k != 'ap75'}
    with pytest.raises(ValueError, match=r"missing \['ap75'\]"):
        ExitDataset(**without_ap75)
    arrays = dict(np.load(path, allow_pickle=False))
    del arrays['ap75']
    np.savez(tmp_path / 'truncated.npz', **arrays)
    with pytest.raises(ValueError, match=r"missing arrays \['ap75'\]"):
        load_exit_dataset(str(tmp_path / 'truncated.npz'))


def test_version_1_panoptic_files_still_load(tmp_path):
    """Files written before version 2: no task, version 1, the panoptic
    arrays (their meta may or may not name metrics and groups)."""
    data = _dataset([1, 2])
    path = tmp_path / 'v1.npz'
    data.save(str(path))
    arrays = dict(np.load(path, allow_pickle=False))
    meta = json.loads(str(arrays['meta']))
    meta['format_version'] = 1
    arrays['meta'] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    loaded = load_exit_dataset(str(path))
    assert loaded.task == 'panoptic' and loaded.meta['format_version'] == 1
    assert (loaded.metrics, loaded.groups) == (('pq', 'sq', 'rq'),
                                               ('All', 'Things', 'Stuff'))
    _assert_same(loaded, ExitDataset(**dict(vars(data), meta=meta)))
    meta['format_version'] = 3
    arrays['meta'] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r'format version 3; this code reads'
                       r' versions \[1, 2\]'):
        load_exit_dataset(str(path))
