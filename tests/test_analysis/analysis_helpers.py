# Copyright (c) The proscale Authors. All rights reserved.
"""Shared constants and hand counts of the analysis tests."""
import importlib.util
from pathlib import Path

from mmcv.ops import MultiScaleDeformableAttention

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_BASELINE = ('configs/mask2former/'
                 'mask2former_r18_1xb4-tiny_synthetic-panoptic.py')
TINY_PROSCALE = (
    'configs/proscale/'
    'mask2former_r18_proscale-333_1xb4-tiny_synthetic-panoptic.py')
# Smallest input with every level of the 1/32 .. 1/8 pyramid above 1 x 1.
SHAPE = (64, 64)


def load_tool(name: str):
    """Import ``tools/analysis/<name>.py`` as a module."""
    path = REPO_ROOT / 'tools' / 'analysis' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(f'analysis_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def level_tokens(shape, strides=(32, 16, 8)):
    """Token counts of the encoder levels, coarse to fine."""
    return [(shape[0] // s) * (shape[1] // s) for s in strides]


def expected_msda_sampling(pixel_decoder, shape):
    """Hand count of the deformable sampling of a pixel decoder.

    A layer attending to the ``k`` coarsest levels has as many queries as
    those levels have tokens; each samples ``levels * points`` values per
    channel, at 4 bilinear taps + 1 weighting multiply-add each.
    """
    tokens = level_tokens(shape)
    return sum(5 * sum(tokens[:m.num_levels]) * m.embed_dims * m.num_levels *
               m.num_points for m in pixel_decoder.modules()
               if isinstance(m, MultiScaleDeformableAttention))


def expected_masked_attention(head, shape):
    """Hand count of the masked cross-attention products (``baddbmm``).

    Decoder layer ``i`` attends from every query to the tokens of level
    ``i % 3`` (coarse to fine): ``queries * tokens * embed_dims``.
    """
    tokens = level_tokens(shape)
    layers = head.transformer_decoder.layers
    return sum(head.num_queries * tokens[i % len(tokens)] *
               layer.cross_attn.embed_dims for i, layer in enumerate(layers))
