# Copyright (c) The proscale Authors. All rights reserved.
"""Helpers of the converter tests: the authors' reference checkpoints and
the tiny models they hold.

The fixtures (``shared/reference/authors_checkpoints/``, next to the
repository; ``PROSCALE_AUTHORS_CHECKPOINTS`` overrides the folder) are
detectron2 checkpoints of reduced-size models in exactly the authors'
format, with an input image and the outputs the authors' code computes.
Their models are built here from this project's configs with the sizes of
the fixture (``tiny_cfg``).
"""
import os
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
from mmengine.config import Config

from proscale.converters import Detectron2Arch

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(
    os.environ.get(
        'PROSCALE_AUTHORS_CHECKPOINTS',
        REPO_ROOT.parent / 'shared' / 'reference' / 'authors_checkpoints'))
# The config each tiny fixture's model is a reduced version of.
BASE_CONFIGS = {
    'proscale': 'configs/proscale/mask2former_{}_proscale-333_8xb2-lsj-50e_'
    'coco-panoptic.py',
    'eco': 'configs/eco_m2f/eco-m2f-gated_{}_8xb2-lsj-50e_coco-panoptic.py',
    'mask2former': 'configs/mask2former/mask2former_{}_8xb2-lsj-50e_'
    'coco-panoptic.py',
}
BACKBONE_NAMES = {'resnet': 'r50', 'swin': 'swin-t-p4-w7-224'}


def fixture_path(name: str) -> Path:
    """Path of a reference file; skips the test if the folder is absent."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f'reference fixture {path} not found (set '
                    'PROSCALE_AUTHORS_CHECKPOINTS)')
    return path


def _backbone_cfg(arch: Detectron2Arch) -> Dict[str, Any]:
    cfg = arch.backbone_cfg
    if arch.backbone == 'resnet':
        return dict(
            stem_channels=cfg['stem_channels'],
            base_channels=cfg['base_channels'],
            init_cfg=None)
    return dict(
        embed_dims=cfg['embed_dims'],
        depths=list(cfg['depths']),
        num_heads=list(cfg['num_heads']),
        window_size=cfg['window_size'],
        init_cfg=None)


def tiny_cfg(settings: Dict[str, Any], arch: Detectron2Arch,
             kind: str) -> Config:
    """The config of a tiny fixture's model.

    Args:
        settings (dict): The fixture's ``settings``.
        arch (Detectron2Arch): The model recognised from its weights.
        kind (str): ``'proscale'``, ``'eco'`` or ``'mask2former'``.

    Returns:
        Config: The project's COCO config of that kind with the fixture's
        sizes.
    """
    cfg = Config.fromfile(
        str(REPO_ROOT /
            BASE_CONFIGS[kind].format(BACKBONE_NAMES[arch.backbone])))
    decoder, predictor = settings['pixel_decoder'], settings['predictor']
    things, stuff = settings['num_things_classes'], settings[
        'num_stuff_classes']
    conv_dim, hidden = decoder['conv_dim'], predictor['hidden_dim']
    encoder = dict(
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=conv_dim, num_heads=decoder['nheads']),
            ffn_cfg=dict(
                embed_dims=conv_dim,
                feedforward_channels=decoder['dim_feedforward'])))
    pixel_decoder = dict(
        encoder=encoder, positional_encoding=dict(num_feats=conv_dim // 2))
    if kind == 'proscale':
        pixel_decoder['num_layers_per_stage'] = list(
            decoder['pyramid_num_layers'])
    else:
        encoder['num_layers'] = decoder['num_encoder_layers']
    attn = dict(embed_dims=hidden, num_heads=predictor['nheads'])
    model = dict(
        backbone=_backbone_cfg(arch),
        panoptic_head=dict(
            in_channels=decoder['in_channels'],
            feat_channels=conv_dim,
            out_channels=decoder['mask_dim'],
            num_queries=predictor['num_queries'],
            num_things_classes=things,
            num_stuff_classes=stuff,
            pixel_decoder=pixel_decoder,
            positional_encoding=dict(num_feats=hidden // 2),
            transformer_decoder=dict(
                num_layers=predictor['num_layers'],
                layer_cfg=dict(
                    self_attn_cfg=attn,
                    cross_attn_cfg=attn,
                    ffn_cfg=dict(
                        embed_dims=hidden,
                        feedforward_channels=predictor['dim_feedforward']))),
            loss_cls=dict(class_weight=[1.0] * (things + stuff) + [0.1])),
        panoptic_fusion_head=dict(
            num_things_classes=things, num_stuff_classes=stuff),
        # instance post-processing takes the top-k of queries x classes
        test_cfg=dict(max_per_image=predictor['num_queries']))
    if kind == 'eco':
        gate = settings['gate']
        model['gate'] = dict(
            exits=tuple(gate['exits']), in_channels=gate['in_channels'])
    cfg.merge_from_dict(dict(model=model))
    return cfg


def max_abs_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Max abs difference of two same-shaped tensors."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours.float() - theirs.float()).abs().max().item()


def head_diffs(cls_preds: List[torch.Tensor], mask_preds: List[torch.Tensor],
               predictor: Dict[str, Any], prefix: str) -> Dict[str, float]:
    """Diffs of every decoder layer's class and mask logits.

    mmdet's lists hold the initial queries' prediction and one per layer;
    the authors' ``aux_outputs[i]`` are the first ones, ``pred_*`` the last.
    """
    theirs = list(predictor['aux_outputs']) + [
        dict(
            pred_logits=predictor['pred_logits'],
            pred_masks=predictor['pred_masks'])
    ]
    assert len(theirs) == len(cls_preds) == len(mask_preds)
    diffs = {}
    for i, (cls_pred, mask_pred, ref) in enumerate(
            zip(cls_preds, mask_preds, theirs)):
        diffs[f'{prefix}class_logits[{i}]'] = max_abs_diff(
            cls_pred, ref['pred_logits'])
        diffs[f'{prefix}mask_logits[{i}]'] = max_abs_diff(
            mask_pred, ref['pred_masks'])
    return diffs


def pixel_decoder_diffs(mask_feature: torch.Tensor,
                        multi_scale: List[torch.Tensor],
                        reference: Dict[str, Any],
                        prefix: str) -> Dict[str, float]:
    """Diffs of the mask features and the multi-scale features."""
    diffs = {
        f'{prefix}mask_features':
        max_abs_diff(mask_feature, reference['mask_features'])
    }
    for i, (ours, theirs) in enumerate(
            zip(multi_scale, reference['multi_scale_features'])):
        diffs[f'{prefix}multi_scale[1/{32 >> i}]'] = max_abs_diff(
            ours, theirs)
    return diffs
