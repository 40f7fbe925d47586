# Copyright (c) The proscale Authors. All rights reserved.
from pathlib import Path

import pytest
import torch

from proscale.analysis import (build_analysis_model, fixed_shape_batch,
                               load_analysis_config)
from proscale.analysis.exit_flops import (ImageGFlops, count_exit_flops,
                                          count_exit_gflops, count_gate_gflops)
from proscale.models.gates import ExitGate

TINY_ECO = str(
    Path(__file__).resolve().parents[2] / 'configs/eco_m2f/'
    'eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py')
SHAPE = (64, 64)


@pytest.fixture(scope='module')
def eco_fixed_at_6(single_thread):
    """The tiny parent, with its config fixing inference at exit 6."""
    torch.manual_seed(0)
    model = build_analysis_model(
        load_analysis_config(TINY_ECO, {'model.test_cfg.exit_layer': 6}))
    return model, [fixed_shape_batch(model, SHAPE)]


def test_every_exit_is_counted_at_its_own_depth(eco_fixed_at_6):
    model, dataloader = eco_fixed_at_6
    flops = count_exit_flops(model, dataloader, [2, 6], 1)
    assert list(flops) == [2, 6]
    assert flops[2]['backbone'] == pytest.approx(flops[6]['backbone'])
    assert flops[2]['encoder'] < flops[6]['encoder']
    assert flops[2]['total'] < flops[6]['total']
    # the config's exit and the exit of set_exit are left as they were
    assert model.test_cfg.exit_layer == 6
    assert model.panoptic_head.pixel_decoder.exit_layer is None
    assert count_exit_gflops(model, dataloader, [2],
                             1) == pytest.approx({2: flops[2]['total']})


def test_invalid_exits_and_gated_models_are_refused(eco_fixed_at_6):
    model, dataloader = eco_fixed_at_6
    with pytest.raises(ValueError, match=r'exits=\[7\]'):
        count_exit_flops(model, dataloader, [7], 1)
    assert model.test_cfg.exit_layer == 6
    model.test_cfg.exit_layer = 'gate'
    try:
        with pytest.raises(ValueError, match='gated version'):
            count_exit_flops(model, dataloader, [2], 1)
    finally:
        model.test_cfg.exit_layer = 6


def test_image_gflops_per_size_and_exit(eco_fixed_at_6):
    model, dataloader = eco_fixed_at_6
    image_gflops = ImageGFlops(model)
    at_2 = count_exit_gflops(model, dataloader, [2], 1)[2]
    at_6 = count_exit_gflops(model, dataloader, [6], 1)[6]
    assert image_gflops(SHAPE, 2) == pytest.approx(at_2)
    large = image_gflops((96, 64), 2)
    assert large > at_2
    # each image at its own size and exit, plus the per-image overhead
    assert image_gflops.mean([(SHAPE, 2), (SHAPE, 6), ((96, 64), 2)],
                             0.5) == pytest.approx(
                                 (at_2 + at_6 + large) / 3 + 0.5)
    assert image_gflops.per_exit([SHAPE, (96, 64)], [2]) == pytest.approx(
        {2: (at_2 + large) / 2})
    with pytest.raises(ValueError, match='no images'):
        image_gflops.mean([])


def test_gate_gflops_is_its_head():
    assert count_gate_gflops(ExitGate((2, 3, 4), 16)) == pytest.approx(
        16 * 3 / 1e9)
    assert count_gate_gflops(ExitGate(
        (2, 3, 4), 16, hidden_channels=8)) == pytest.approx(
            (16 * 8 + 8 * 3) / 1e9)
