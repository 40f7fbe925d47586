# Copyright (c) The proscale Authors. All rights reserved.
"""The released models' full key lists: recognition, conversion and strict
loading into this project's full-size configs (random values of the listed
shapes)."""
import json
from collections import OrderedDict
from typing import Dict

import pytest
import torch
from converter_helpers import fixture_path

from proscale.converters import (ConversionError, check_strict,
                                 convert_state_dict, default_config,
                                 recognize)
from proscale.converters.checkpoint import build_model
from proscale.converters.detectron2_mask2former import CITYSCAPES_ROWS
from proscale.datasets import CityscapesPanopticDataset
from proscale.utils.cli import load_config

P = 'sem_seg_head.pixel_decoder.'
GATE_PREFIX = P + 'transformer.encoder.gt.'
# detectron2's Cityscapes contiguous ids are the train ids.
CITYSCAPES_TRAIN_ID_NAMES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
    'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
    'truck', 'bus', 'train', 'motorcycle', 'bicycle')


def key_list(name: str) -> 'OrderedDict[str, torch.Size]':
    with open(fixture_path(f'keys_{name}_coco.json')) as f:
        keys = json.load(f)['keys']
    return OrderedDict((k['name'], torch.Size(k['shape'])) for k in keys)


def mask2former_keys(backbone: str) -> 'OrderedDict[str, torch.Size]':
    """Mask2Former's released layout: ECO-M2F's pixel decoder without the
    gate (MSDeformAttnPixelDecoder), with the R50 or Swin-T backbone."""
    eco = key_list('swin-t_eco-m2f')
    source = key_list('r50_proscale-333') if backbone == 'r50' else eco
    shapes = OrderedDict(
        (k, v) for k, v in source.items() if k.startswith('backbone.'))
    # input projections keep the backbone's channels
    projections = (P + 'input_proj.', P + 'adapter_1.')
    shapes.update((k, source[k] if k.startswith(projections) else v)
                  for k, v in eco.items()
                  if not k.startswith('backbone.')
                  and not k.startswith(GATE_PREFIX))
    return shapes


def cityscapes_keys() -> 'OrderedDict[str, torch.Size]':
    """ECO-M2F's Cityscapes release: the COCO keys with 19 classes."""
    shapes = key_list('swin-t_eco-m2f')
    for key in ('sem_seg_head.predictor.class_embed.weight',
                'sem_seg_head.predictor.class_embed.bias',
                'criterion.empty_weight'):
        shapes[key] = torch.Size((20, ) + tuple(shapes[key][1:]))
    return shapes


def random_state_dict(
        shapes: Dict[str, torch.Size]) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return OrderedDict((k, torch.randn(shape, generator=generator))
                       for k, shape in shapes.items())


RELEASES = {
    'r50_proscale-333': (
        lambda: key_list('r50_proscale-333'),
        'proscale/mask2former_r50_proscale-333_8xb2-lsj-50e_coco-panoptic.py',
        659),
    'swin-t_proscale-333': (
        lambda: key_list('swin-t_proscale-333'),
        'proscale/mask2former_swin-t-p4-w7-224_proscale-333_8xb2-lsj-50e_'
        'coco-panoptic.py', 530),
    'swin-t_eco-m2f_coco': (
        lambda: key_list('swin-t_eco-m2f'),
        'eco_m2f/eco-m2f-gated_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py',
        484),
    'swin-t_eco-m2f_cityscapes': (
        cityscapes_keys, 'eco_m2f/eco-m2f-gated_swin-t-p4-w7-224_8xb2-90k_'
        'cityscapes-panoptic.py', 484),
    'r50_mask2former': (
        lambda: mask2former_keys('r50'),
        'mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py', None),
    'swin-t_mask2former': (
        lambda: mask2former_keys('swin-t'),
        'mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_'
        'coco-panoptic.py', None),
}


@pytest.mark.parametrize('release', sorted(RELEASES))
def test_full_size_release_loads_strictly(release, single_thread):
    make_shapes, config, num_converted = RELEASES[release]
    shapes = make_shapes()
    arch = recognize(shapes)
    assert default_config(arch) == 'proscale::' + config
    new_state_dict, leftover = convert_state_dict(
        random_state_dict(shapes), arch)
    assert leftover == []
    if num_converted is not None:
        assert len(new_state_dict) == num_converted
    check_strict(build_model(load_config('proscale::' + config)),
                 new_state_dict)


def test_full_size_settings():
    arch = recognize(key_list('r50_proscale-333'))
    assert arch.describe() == (
        'PRO-SCALE: ResNet-50 (stem 64, width 64), stages (3, 3, 3), TRC '
        'linear, pixel embedding maxpool, 9 decoder layers, 100 queries, 133 '
        'classes (COCO order identity)')
    arch = recognize(key_list('swin-t_eco-m2f'))
    assert (arch.model_type, arch.backbone_name) == ('ECO-M2F', 'swin-t')
    assert arch.gate_exits == (2, 3, 4, 5, 6)
    assert arch.num_layers_per_stage == (0, 0, 6)
    assert recognize(mask2former_keys('r50')).model_type == 'Mask2Former'


def test_other_stage_splits_and_trc():
    """(1, 1, 4) with a conv TRC: the split and TRC type come from shapes."""
    shapes = key_list('swin-t_proscale-333')
    layer = P + 'transformer.encoder.layers.{}.self_attn.{}.{}'
    levels = (1, 2, 3, 3, 3, 3)
    for n in range(9):
        for name, rows in (('sampling_offsets', 64), ('attention_weights',
                                                      32)):
            for param in ('weight', 'bias'):
                key = layer.format(n, name, param)
                if n >= len(levels):
                    del shapes[key]
                else:
                    shapes[key] = torch.Size((rows * levels[n], ) +
                                             tuple(shapes[key][1:]))
    shapes = OrderedDict((k, v) for k, v in shapes.items()
                         if not any(f'.layers.{n}.' in k and k.startswith(P)
                                    for n in (6, 7, 8)))
    shapes[P + 'transformer.encoder.token_excite.ops.weight'] = torch.Size(
        (1, 256, 1, 1))
    arch = recognize(shapes)
    assert (arch.num_layers_per_stage, arch.trc) == ((1, 1, 4), 'conv')
    assert default_config(arch).endswith(
        'mask2former_swin-t-p4-w7-224_proscale-114_8xb2-lsj-50e_'
        'coco-panoptic.py')
    new_state_dict, leftover = convert_state_dict(
        random_state_dict(shapes), arch)
    assert leftover == []
    cfg = load_config(
        'proscale::' + RELEASES['swin-t_proscale-333'][1],
        {'model.panoptic_head.pixel_decoder.num_layers_per_stage': [1, 1, 4],
         'model.panoptic_head.pixel_decoder.trc.type': 'conv'})
    check_strict(build_model(cfg), new_state_dict)


def test_cityscapes_classes_follow_project_order():
    assert tuple(CITYSCAPES_TRAIN_ID_NAMES[i]
                 for i in CITYSCAPES_ROWS[:-1]) == tuple(
                     CityscapesPanopticDataset.METAINFO['classes'])
    shapes = cityscapes_keys()
    arch = recognize(shapes)
    assert arch.class_order == 'cityscapes'
    state_dict = random_state_dict(shapes)
    new_state_dict, _ = convert_state_dict(state_dict, arch)
    weight = state_dict['sem_seg_head.predictor.class_embed.weight']
    converted = new_state_dict['panoptic_head.cls_embed.weight']
    assert torch.equal(converted[0], weight[11])  # person
    assert torch.equal(converted[8], weight[0])  # road
    assert torch.equal(converted[19], weight[19])  # no object
    assert recognize(shapes, class_order='identity').class_order == 'identity'


def test_unsupported_models_are_named():
    shapes = key_list('r50_proscale-333')
    with pytest.raises(ConversionError, match='not a Mask2Former-family'):
        recognize({k: v for k, v in shapes.items()
                   if not k.startswith('sem_seg_head.')})
    ade = OrderedDict(shapes)
    ade['sem_seg_head.predictor.class_embed.weight'] = torch.Size(
        (151, 256))
    with pytest.raises(ConversionError, match='ADE20K'):
        recognize(ade)
    with pytest.raises(ConversionError, match="missing key 'backbone.res2"):
        recognize({k: v for k, v in shapes.items()
                   if k != 'backbone.res2.0.conv3.weight'})


def test_unplaced_keys_are_leftovers():
    shapes = key_list('swin-t_proscale-333')
    shapes['backbone.head.weight'] = torch.Size((10, 768))
    shapes['sem_seg_head.pixel_decoder.extra.weight'] = torch.Size((1, ))
    arch = recognize(shapes)
    new_state_dict, leftover = convert_state_dict(
        random_state_dict(shapes), arch)
    assert leftover == [
        'backbone.head.weight', 'sem_seg_head.pixel_decoder.extra.weight'
    ]
    assert 'criterion.empty_weight' not in leftover
    assert len(new_state_dict) == 530
