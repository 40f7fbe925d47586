# Copyright (c) The proscale Authors. All rights reserved.
import copy
import functools
import json
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS, init_default_scope

from proscale.engine.hooks import (ExitSamplingHook, exit_weights,
                                   sample_exits)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(__file__)))
TINY_ECO = osp.join(
    REPO_ROOT,
    'configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py')
EXITS = [2, 3, 4, 5, 6]


@functools.lru_cache
def _load_model_cfg():
    return Config.fromfile(TINY_ECO).model


def _build_model(seed=0):
    init_default_scope('mmdet')
    cfg = copy.deepcopy(_load_model_cfg())
    cfg.train_cfg.num_points = 256
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.train()


def _packed_inputs(seed=0, batch_size=1):
    # demo_mm_inputs draws the semantic maps from numpy's global RNG
    np.random.seed(seed)
    return demo_mm_inputs(
        batch_size,
        image_shapes=[(3, 64, 48)] * batch_size,
        num_classes=8,
        with_mask=True,
        with_semantic=True)


def _runner(model, seed=5, optim_wrapper=None, name='eco-hook-test'):
    return SimpleNamespace(
        model=model,
        iter=0,
        seed=seed,
        optim_wrapper=optim_wrapper,
        message_hub=MessageHub.get_instance(name))


@pytest.fixture(scope='module')
def model():
    return _build_model()


def test_exit_weights_schedules():
    assert exit_weights('linear', EXITS) == {k: float(k) for k in EXITS}
    assert exit_weights('uniform', EXITS) == {k: 1.0 for k in EXITS}
    normalized = exit_weights('normalized', EXITS)
    assert sum(normalized.values()) == pytest.approx(len(EXITS))
    assert normalized[6] / normalized[2] == pytest.approx(3)
    assert exit_weights([1, 2], [4, 6]) == {4: 1.0, 6: 2.0}
    assert exit_weights({6: 3, 4: 1}, [4, 6]) == {4: 1.0, 6: 3.0}


@pytest.mark.parametrize('weights, match', [
    ('quadratic', 'unknown schedule'),
    ([1, 2, 3], 'one weight per trained exit'),
    ({
        4: 1,
        5: 2
    }, 'keys must be exactly'),
    ([1, 0], 'finite and positive'),
    ([1, float('nan')], 'finite and positive'),
])
def test_exit_weights_errors(weights, match):
    with pytest.raises(ValueError, match=match):
        exit_weights(weights, [4, 6])


@pytest.mark.parametrize('kwargs, match', [
    (dict(loss_weights='quadratic'), 'unknown schedule'),
    (dict(exits_per_iter=0), 'exits_per_iter'),
    (dict(seed=-1), 'seed'),
    (dict(sampling='linear'), 'sampling'),
])
def test_hook_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExitSamplingHook(**kwargs)


def test_sample_exits_is_deterministic_per_seed_and_iteration():
    draws = [sample_exits(7, i, EXITS, 1)[0] for i in range(200)]
    assert draws == [sample_exits(7, i, EXITS, 1)[0] for i in range(200)]
    assert draws != [sample_exits(8, i, EXITS, 1)[0] for i in range(200)]
    counts = np.bincount(draws, minlength=7)[2:]
    assert counts.min() > 20, counts
    # a resumed run (a fresh hook at a later iteration) continues the same
    # sequence
    resumed = [sample_exits(7, i, EXITS, 1)[0] for i in range(150, 200)]
    assert resumed == draws[150:]
    triples = [sample_exits(7, i, EXITS, 3) for i in range(20)]
    assert all(t == sorted(set(t)) and len(t) == 3 for t in triples)
    assert len({tuple(t) for t in triples}) > 1


def test_hook_sets_exit_and_weight_and_logs(model):
    hook = HOOKS.build(dict(type='ExitSamplingHook', seed=None))
    runner = _runner(model)
    hook.before_train(runner)
    assert hook.seed == runner.seed
    assert hook.weights == {k: float(k) for k in EXITS}
    packed = _packed_inputs()
    for iteration in range(2):
        runner.iter = iteration
        hook.before_train_iter(runner, iteration)
        k = sample_exits(runner.seed, iteration, EXITS, 1)[0]
        assert model.current_exit == k
        assert model.loss_weight == k
        # alpha_k reaches the loss: every term is k times the unweighted one
        torch.manual_seed(0)
        data = model.data_preprocessor(copy.deepcopy(packed), True)
        weighted = model(**data, mode='loss')
        model.loss_weight = 1.0
        torch.manual_seed(0)
        data = model.data_preprocessor(copy.deepcopy(packed), True)
        unweighted = model(**data, mode='loss')
        for key, value in unweighted.items():
            torch.testing.assert_close(weighted[key], k * value)
        hook.after_train_iter(runner, iteration)
        assert model.current_exit == 6 and model.loss_weight == 1.0
        assert runner.message_hub.get_scalar('train/exit').current() == k
        assert f'train/loss_exit{k}' in runner.message_hub.log_scalars


def test_sample_exits_with_probabilities():
    probs = [k / sum(EXITS) for k in EXITS]
    draws = [sample_exits(3, i, EXITS, 1, probs)[0] for i in range(4000)]
    assert draws == [
        sample_exits(3, i, EXITS, 1, probs)[0] for i in range(4000)
    ]
    shares = np.bincount(draws, minlength=7)[2:] / len(draws)
    np.testing.assert_allclose(shares, probs, atol=0.02)


def test_hook_alpha_sampling_mode(model):
    hook = ExitSamplingHook(loss_weights='linear', sampling='alpha', seed=4)
    runner = _runner(model, name='eco-hook-test-alpha')
    hook.before_train(runner)
    assert hook.weights == {k: 1.0 for k in EXITS}
    assert hook.probs == pytest.approx([k / 20 for k in EXITS])
    for iteration in range(3):
        runner.iter = iteration
        hook.before_train_iter(runner, iteration)
        k = sample_exits(4, iteration, EXITS, 1, hook.probs)[0]
        assert model.current_exit == k and model.loss_weight == 1.0
        hook.after_train_iter(runner, iteration)
    assert [hook.draw(i)[0] for i in range(3)] == [
        sample_exits(4, i, EXITS, 1, hook.probs)[0] for i in range(3)
    ]


def test_hook_multi_exit_mode(model):
    hook = ExitSamplingHook(
        loss_weights='normalized', exits=[2, 4, 6], exits_per_iter=3, seed=1)
    runner = _runner(model, name='eco-hook-test-multi')
    hook.before_train(runner)
    hook.before_train_iter(runner, 0)
    assert model.exit_loss_weights == pytest.approx({2: 0.5, 4: 1.0, 6: 1.5})
    torch.manual_seed(0)
    data = model.data_preprocessor(_packed_inputs(), True)
    model(**data, mode='loss')
    hook.after_train_iter(runner, 0)
    assert model.exit_loss_weights is None
    for k in (2, 4, 6):
        assert f'train/loss_exit{k}' in runner.message_hub.log_scalars
    assert 'train/exit' not in runner.message_hub.log_scalars


def test_hook_rejects_bad_setup(model):
    with pytest.raises(ValueError, match='ExitSamplingHook.exits'):
        ExitSamplingHook(exits=[1, 2]).before_train(_runner(model))
    with pytest.raises(ValueError, match='exits_per_iter=3 exceeds'):
        ExitSamplingHook(
            exits=[2, 6], exits_per_iter=3).before_train(_runner(model))
    with pytest.raises(TypeError, match='early-exit model'):
        ExitSamplingHook().before_train(_runner(torch.nn.Linear(2, 2)))


def _clipped_adamw_run(loss_scales, clip):
    """Train a toy linear model with AdamW, one loss scale per step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    optim_wrapper = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-2),
        clip_grad=dict(max_norm=0.01) if clip else None)
    inputs = torch.randn(len(loss_scales), 16, 8)
    for scale, x in zip(loss_scales, inputs):
        optim_wrapper.update_params(scale * model(x).pow(2).sum())
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_grad_norm_clipping_cancels_a_scalar_loss_weight():
    """Fast check of the clipping answer: with norm clipping (and a norm
    above the threshold) a per-step loss scale changes nothing."""
    alphas, ones = [6.0, 2.0, 6.0], [1.0, 1.0, 1.0]
    torch.testing.assert_close(
        _clipped_adamw_run(alphas, clip=True),
        _clipped_adamw_run(ones, clip=True))
    assert not torch.allclose(
        _clipped_adamw_run(alphas, clip=False),
        _clipped_adamw_run(ones, clip=False))


def _train(loss_weights, exits_per_iter, clip, iterations=3):
    """Train the tiny parent a few steps; return its flat parameters."""
    model = _build_model()
    optim_wrapper = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3),
        clip_grad=dict(max_norm=0.01) if clip else None)
    # seed 2 draws exits 6, 2, 6 from [2, 6], so alpha changes between steps
    hook = ExitSamplingHook(
        loss_weights, exits=[2, 6], exits_per_iter=exits_per_iter, seed=2)
    runner = _runner(model, optim_wrapper=optim_wrapper)
    hook.before_train(runner)
    for iteration in range(iterations):
        runner.iter = iteration
        hook.before_train_iter(runner, iteration)
        torch.manual_seed(iteration)
        model.train_step(_packed_inputs(iteration), optim_wrapper)
        hook.after_train_iter(runner, iteration)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.heavy
def test_grad_norm_clipping_cancels_single_exit_weights():
    """The documented clipping experiment on the tiny parent."""
    assert [sample_exits(2, i, [2, 6], 1)[0] for i in range(3)] == [6, 2, 6]
    initial = torch.cat(
        [p.detach().flatten() for p in _build_model().parameters()])

    def relative_gap(a, b):
        return ((a - b).abs().max() / (a - initial).abs().max()).item()

    # one exit per iteration + clipping: alpha_k = k trains exactly like 1
    assert relative_gap(_train('linear', 1, True), _train('uniform', 1,
                                                          True)) < 1e-3
    # without clipping (AdamW alone) the changing weight does act
    assert relative_gap(
        _train('linear', 1, False), _train('uniform', 1, False)) > 1e-2
    # several exits per iteration: the weights act despite clipping
    assert relative_gap(_train('linear', 2, True), _train('uniform', 2,
                                                          True)) > 1e-2


def _ddp_worker(rank, world_size, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo',
        init_method=f'file://{init_file}',
        rank=rank,
        world_size=world_size)
    model = MMDistributedDataParallel(
        module=_build_model(), find_unused_parameters=True)
    optim_wrapper = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3),
        clip_grad=dict(max_norm=0.01))
    # runner seeds differ between ranks with `randomness.diff_rank_seed`;
    # the hook uses rank 0's
    runner = _runner(model, seed=5 + rank, optim_wrapper=optim_wrapper)
    hook = ExitSamplingHook()
    hook.before_train(runner)
    draws = [hook.draw(i) for i in range(50)]
    exits = []
    for iteration in range(3):
        runner.iter = iteration
        hook.before_train_iter(runner, iteration)
        exits.append(model.module.current_exit)
        model.train_step(_packed_inputs(seed=rank), optim_wrapper)
        hook.after_train_iter(runner, iteration)
    checksum = sum(p.double().sum().item() for p in model.parameters())
    with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(draws=draws, exits=exits, checksum=checksum), f)
    dist.destroy_process_group()


def test_two_gloo_processes_draw_the_same_exits(tmp_path):
    """Two real DDP ranks: same exits, no unused-parameter error, and equal
    weights after training steps at early exits."""
    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / 'init'), str(tmp_path)),
        nprocs=2,
        join=True)
    ranks = [
        json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1)
    ]
    assert ranks[0]['draws'] == ranks[1]['draws']
    assert ranks[0]['draws'] == [
        sample_exits(5, i, EXITS, 1) for i in range(50)
    ]
    assert ranks[0]['exits'] == ranks[1]['exits']
    # the steps ran at early exits, so deeper layers got no gradient
    assert min(ranks[0]['exits']) < 6
    assert ranks[0]['checksum'] == pytest.approx(
        ranks[1]['checksum'], rel=1e-9)
