# Copyright (c) The proscale Authors. All rights reserved.
import pytest
import torch
import torch.nn as nn

from proscale.models.layers import LightPixelEmbedding
from proscale.models.layers.light_pixel_embedding import max_pool3x3


@pytest.mark.parametrize('shape', [(2, 3, 7, 9), (1, 2, 2, 2), (1, 1, 2, 5),
                                   (4, 5, 1, 3)])
def test_max_pool3x3_equals_max_pool2d(shape):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator)
    ties = torch.randint(-2, 3, shape, generator=generator).float()
    pool = nn.MaxPool2d(3, 1, 1)
    for inputs in (x, ties, x.transpose(-1, -2)):
        if min(inputs.shape[-2:]) >= 2:
            assert torch.equal(max_pool3x3(inputs), pool(inputs))


def test_lpe_fast_pool_at_inference_and_max_pool_in_training():
    lpe = LightPixelEmbedding(8, norm_cfg=dict(type='GN', num_groups=4))
    x = torch.randn(2, 8, 9, 6)
    reference = lpe.activate(lpe.norm(lpe.pool(x)))
    with torch.no_grad():
        assert torch.equal(lpe(x), reference)
        assert torch.equal(
            lpe(x[..., :1, :]),
            lpe.activate(lpe.norm(lpe.pool(x[..., :1, :]))))
    # Ties in training: max-pool's gradient goes to one input only.
    x = torch.ones(1, 8, 4, 4, requires_grad=True)
    lpe(x).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    lpe.activate(lpe.norm(lpe.pool(x))).sum().backward()
    assert torch.equal(grad, x.grad)
