# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
from analysis_helpers import REPO_ROOT, SHAPE, TINY_BASELINE

from proscale.analysis import (build_analysis_model, count_flops,
                               fixed_shape_batch, load_analysis_config)


@pytest.fixture(scope='session')
def tiny_baseline():
    torch.manual_seed(0)
    return build_analysis_model(
        load_analysis_config(str(REPO_ROOT / TINY_BASELINE)))


@pytest.fixture(scope='session')
def tiny_baseline_flops(tiny_baseline):
    return count_flops(tiny_baseline, fixed_shape_batch(tiny_baseline, SHAPE))


@pytest.fixture(autouse=True, scope='module')
def trace_on_one_thread(single_thread):
    """Trace on one thread: on a small shared machine it is much faster."""
