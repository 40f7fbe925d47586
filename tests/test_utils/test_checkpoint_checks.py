# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
from torch import nn

from proscale.utils.checkpoint_checks import (CheckpointError,
                                              check_checkpoint_matches,
                                              checkpoint_sha256,
                                              read_checkpoint,
                                              state_dict_mismatch)


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))


def test_matching_checkpoint_passes(tmp_path):
    path = tmp_path / 'ok.pth'
    state_dict = _model().state_dict()
    del state_dict['1.num_batches_tracked']  # ignored, as mmengine does
    torch.save(dict(state_dict={f'module.{k}': v
                                for k, v in state_dict.items()}), path)
    check_checkpoint_matches(_model(), str(path))


def test_mismatch_lists_a_few_keys_of_each_kind(tmp_path):
    path = tmp_path / 'other.pth'
    other = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Identity(), nn.Linear(2, 2))
    torch.save(dict(state_dict=other.state_dict()), path)
    mismatch = state_dict_mismatch(_model(), other.state_dict())
    assert mismatch['missing'] == [
        '1.bias', '1.running_mean', '1.running_var', '1.weight'
    ]
    assert mismatch['unexpected'] == ['2.bias', '2.weight']
    assert mismatch['shape'] == [
        '0.bias: (8,) vs (4,)', '0.weight: (8, 3, 1, 1) vs (4, 3, 1, 1)'
    ]
    with pytest.raises(CheckpointError) as error:
        check_checkpoint_matches(_model(), str(path))
    assert str(error.value) == (
        f'checkpoint {path} does not fit the model of the config: 4 missing '
        '(1.bias, 1.running_mean, 1.running_var, ...); 2 unexpected '
        '(2.bias, 2.weight); 2 with another shape (0.bias: (8,) vs (4,), '
        '0.weight: (8, 3, 1, 1) vs (4, 3, 1, 1))')


@pytest.mark.parametrize('content', [b'', b'{"json": 1}', 'truncated'])
def test_unreadable_checkpoint_is_named(content, tmp_path):
    path = tmp_path / 'bad.pth'
    if content == 'truncated':
        torch.save(_model().state_dict(), path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f'checkpoint {path} cannot be '
                       'read'):
        read_checkpoint(str(path))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        read_checkpoint(str(tmp_path / 'nope.pth'))


def test_checkpoint_sha256(tmp_path):
    path = tmp_path / 'f.bin'
    path.write_bytes(b'abc')
    assert checkpoint_sha256(str(path)) == (
        'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
