from pathlib import Path

import pytest
import torch

from proscale.analysis import (build_analysis_model, fixed_shape_batch,
                               load_analysis_config)
from proscale.analysis.exit_flops import (count_exit_flops, count_exit_gflops,
                                          expected_gflops)

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


def test_expected_gflops_weights_exits_by_share():
    counts, gflops = {2: 3, 6: 1}, {2: 10.0, 6: 30.0}
    assert expected_gflops(counts, gflops, 0.5) == pytest.approx(15.5)
    with pytest.raises(ValueError, match='no images'):
        expected_gflops({2: 0}, {2: 10.0})
