# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
from mmdet.registry import MODELS

from proscale.models.gates import (ExitGateModel, ExitGatePreprocessor,
                                   ExitHardCELoss, ExitSoftCELoss,
                                   exit_utility)

EXITS = (2, 3, 4)


def _model(**kwargs) -> ExitGateModel:
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='ExitGateModel',
            gate=dict(type='ExitGate', exits=EXITS, in_channels=6),
            **dict(dict(beta=0.01), **kwargs)))


def _batch(num=5):
    generator = torch.Generator().manual_seed(1)
    return dict(
        inputs=torch.randn(num, 6, generator=generator) * 3 + 1,
        quality=torch.rand(num, len(EXITS), generator=generator).double())


def test_preprocessor_standardises():
    preprocessor = ExitGatePreprocessor(num_channels=6)
    batch = _batch()
    assert torch.equal(preprocessor(batch)['inputs'], batch['inputs'])
    mean, std = torch.arange(6.), torch.full((6, ), 2.)
    preprocessor.set_statistics(mean, std)
    out = preprocessor(batch, training=True)
    assert torch.equal(out['inputs'], (batch['inputs'] - mean) / std)
    assert torch.equal(out['quality'], batch['quality'])
    assert set(preprocessor.state_dict()) == {'mean', 'std'}
    with pytest.raises(ValueError, match='6 input channels'):
        preprocessor.set_statistics(mean[:2], std[:2])


def test_model_modes():
    model = _model(loss='soft_ce', temperature=0.1)
    assert isinstance(model.criterion, ExitSoftCELoss)
    assert model.criterion.temperature == 0.1
    batch = _batch()
    logits = model(batch['inputs'])
    assert logits.shape == (5, 3)
    utility = exit_utility(batch['quality'], EXITS, 0.01)
    losses = model(**batch, mode='loss')
    torch.testing.assert_close(losses['loss_gate'],
                               model.criterion(logits, utility))
    [prediction] = model(**batch, mode='predict')
    assert torch.equal(prediction['choice'], logits.argmax(1))
    assert torch.equal(prediction['utility'], utility)
    assert isinstance(_model().criterion, ExitHardCELoss)
    with pytest.raises(ValueError, match='needs the quality'):
        model(batch['inputs'], mode='loss')
    with pytest.raises(ValueError, match="mode must be"):
        model(**batch, mode='other')
    with pytest.raises(ValueError, match='beta must be'):
        _model(beta=-1)
    with pytest.raises(ValueError, match='unknown gate loss'):
        _model(loss='focal')


def test_train_step_standardises_and_trained_gate_runs_on_raw_inputs():
    model = _model()
    batch = _batch()
    mean = batch['inputs'].mean(0)
    std = batch['inputs'].std(0)
    model.data_preprocessor.set_statistics(mean, std)
    standardised = model.data_preprocessor(batch)['inputs']
    expected = model((batch['inputs'] - mean) / std)
    assert torch.equal(model(standardised), expected)
    gate = model.trained_gate()
    assert bool(gate.trained) and not bool(model.gate.trained)
    torch.testing.assert_close(gate(batch['inputs']), expected)
    # the model keeps its own (unfolded) weights, e.g. to resume
    assert not torch.equal(gate.head.weight, model.gate.head.weight)
