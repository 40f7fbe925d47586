# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
from mmdet.registry import MODELS

from proscale.models.gates import ExitGate, load_gate, merge_gate, save_gate

EXITS = (2, 3, 4, 5, 6)


def _gate(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(
        dict(type='ExitGate', exits=EXITS, in_channels=8, **kwargs)).eval()


@pytest.mark.parametrize('hidden_channels', [None, 16])
def test_pools_feature_maps_and_accepts_pooled_inputs(hidden_channels):
    gate = _gate(hidden_channels=hidden_channels)
    maps = torch.randn(3, 8, 4, 5)
    logits = gate(maps)
    assert logits.shape == (3, len(EXITS))
    torch.testing.assert_close(gate(maps.mean(dim=(2, 3))), logits)
    exits = gate.predict(maps)
    assert exits.dtype == torch.int64
    assert exits.tolist() == [EXITS[i] for i in logits.argmax(1).tolist()]


def test_linear_gate_is_the_authors_design():
    gate = _gate()
    assert isinstance(gate.head, torch.nn.Linear)
    assert set(gate.state_dict()) == {'head.weight', 'head.bias', 'trained'}


def test_input_levels_must_divide_the_input():
    assert ExitGate((2, 3), 96, input_levels=3).input_levels == 3
    for levels in (0, 5, True):
        with pytest.raises(ValueError, match='input_levels'):
            ExitGate((2, 3), 96, input_levels=levels)


def test_wrong_input_is_reported():
    with pytest.raises(ValueError, match=r'\(B, 8, H, W\)'):
        _gate()(torch.randn(2, 4, 3, 3))


def test_fold_input_normalization_is_exact():
    gate = _gate(hidden_channels=16)
    x = torch.randn(5, 8)
    mean, std = torch.randn(8), torch.rand(8) + 0.5
    expected = gate((x - mean) / std)
    gate.fold_input_normalization(mean, std)
    torch.testing.assert_close(gate(x), expected)


def test_gate_file_round_trip_and_merge(tmp_path):
    gate = _gate()
    gate.trained.fill_(True)
    meta = dict(
        gate_cfg=dict(
            type='ExitGate',
            exits=list(EXITS),
            in_channels=8,
            hidden_channels=None),
        beta=0.01,
        loss='hard_ce')
    save_gate(gate, meta, str(tmp_path / 'gate.pth'))
    loaded, loaded_meta = load_gate(str(tmp_path / 'gate.pth'))
    assert loaded_meta['beta'] == 0.01 and bool(loaded.trained)
    x = torch.randn(2, 8)
    torch.testing.assert_close(loaded(x), gate(x))

    parent = dict(
        meta=dict(epoch=1),
        state_dict={
            'backbone.w': torch.ones(2),
            'gate.head.bias': torch.ones(9)
        })
    torch.save(parent, tmp_path / 'parent.pth')
    merge_gate(
        str(tmp_path / 'parent.pth'), str(tmp_path / 'gate.pth'),
        str(tmp_path / 'merged.pth'))
    merged = torch.load(tmp_path / 'merged.pth')
    assert merged['meta']['epoch'] == 1
    assert merged['meta']['exit_gate']['beta'] == 0.01
    assert set(merged['state_dict']) == {
        'backbone.w', 'gate.head.weight', 'gate.head.bias', 'gate.trained'
    }
    torch.testing.assert_close(merged['state_dict']['gate.head.bias'],
                               gate.head.bias)

    mlp_cfg = dict(meta['gate_cfg'], hidden_channels=16)
    with pytest.raises(ValueError, match='does not match the trained gate'):
        merge_gate(
            str(tmp_path / 'parent.pth'),
            str(tmp_path / 'gate.pth'),
            str(tmp_path / 'other.pth'),
            gate_cfg=mlp_cfg)
    # a gate on the tokens after encoder layer 1 reads other features
    with pytest.raises(ValueError, match='does not match the trained gate'):
        merge_gate(
            str(tmp_path / 'parent.pth'),
            str(tmp_path / 'gate.pth'),
            str(tmp_path / 'other.pth'),
            gate_cfg=dict(meta['gate_cfg'], input_depth=1))


def test_a_trained_gate_of_another_shape_is_refused():
    trained = _gate(hidden_channels=16)
    trained.trained.fill_(True)
    with pytest.raises(ValueError, match='does not fit this gate'):
        _gate().load_state_dict(trained.state_dict(), strict=False)


def test_bad_files_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_gate(str(tmp_path / 'missing.pth'))
    torch.save(dict(state_dict={}), tmp_path / 'not_a_gate.pth')
    with pytest.raises(ValueError, match='is not a gate file'):
        load_gate(str(tmp_path / 'not_a_gate.pth'))
