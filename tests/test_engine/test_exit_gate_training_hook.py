# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
from mmengine.runner import Runner

from proscale.eco.exit_samples import ExitSamples
from proscale.eco.gate_training import gate_runner_cfg
from proscale.models.gates import load_gate

EXITS = (2, 3, 4)


def _samples() -> ExitSamples:
    generator = torch.Generator().manual_seed(0)
    return ExitSamples(
        torch.randn(12, 5, generator=generator) * 4 + 2,
        torch.rand(12, 3, generator=generator).double(),
        EXITS,
        meta=dict(checkpoint=dict(path='parent.pth')))


def _runner(tmp_path, out_file='gate.pth', **gate) -> Runner:
    cfg = gate_runner_cfg(_samples(), beta=0.01, iters=3, batch_size=4)
    cfg['model']['gate'].update(gate)
    cfg['custom_hooks'] = [
        dict(type='ExitGateTrainingHook', out_file=out_file, num_threads=1)
    ]
    return Runner(work_dir=str(tmp_path), **cfg)


def test_hook_sets_statistics_and_saves_the_folded_gate(tmp_path):
    threads = torch.get_num_threads()
    runner = _runner(tmp_path)
    runner.train()
    assert torch.get_num_threads() == threads
    model = runner.model
    mean, std = runner.train_dataloader.dataset.input_statistics()
    assert torch.equal(model.data_preprocessor.mean, mean)
    assert torch.equal(model.data_preprocessor.std, std)
    gate, meta = load_gate(str(tmp_path / 'gate.pth'))
    assert bool(gate.trained)
    inputs = _samples().gate_inputs
    torch.testing.assert_close(
        gate(inputs), model((inputs - mean) / std), rtol=1e-5, atol=1e-5)
    assert meta['gate_cfg']['exits'] == list(EXITS)
    assert (meta['beta'], meta['loss'], meta['metric'], meta['iters']) == (
        0.01, 'hard_ce', 'pq', 3)
    assert meta['derived']['checkpoint']['path'] == 'parent.pth'


def test_hook_refuses_a_gate_that_does_not_fit_the_data(tmp_path):
    runner = _runner(tmp_path, out_file=None, exits=(2, 3, 5))
    with pytest.raises(ValueError, match=r'does not fit the training data'):
        runner.train()
