# Copyright (c) The proscale Authors. All rights reserved.
"""Semantic segmentation with mmseg's Mask2Former and the PRO-SCALE decoder.

A tiny ADE20K-style dataset (``images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png``, 0 = unlabeled) trains the
project's PRO-SCALE ADE20K semantic config, shrunk to a tiny model, for a
few iterations and is evaluated with mmseg's mIoU.
"""
from pathlib import Path

import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / ('configs/proscale/'
                 'mask2former_r50_proscale-333_8xb2-160k_ade20k-512x512.py')
SIZE = 64


def write_ade20k_semantic(root: Path, seed: int = 0) -> None:
    """Write two training and one validation image with label maps."""
    rng = np.random.default_rng(seed)
    for split, num_images in (('training', 2), ('validation', 1)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for index in range(1, num_images + 1):
            name = f'ADE_{split[:5]}_{index:08d}'
            labels = np.full((SIZE, SIZE), 1, dtype=np.uint8)  # wall
            labels[SIZE // 2:] = 4  # floor
            labels[10:40, 20:40] = 13  # person
            labels[:3, :3] = 0  # unlabeled
            image = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / 'images' / split /
                                        f'{name}.jpg')
            Image.fromarray(labels).save(root / 'annotations' / split /
                                         f'{name}.png')


def tiny_config(root: Path, work_dir: Path) -> Config:
    """The PRO-SCALE ADE20K config with a tiny model and tiny images."""
    cfg = Config.fromfile(CONFIG)
    channels, heads = 32, 4
    head = cfg.model.decode_head
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.data_preprocessor.size = (SIZE, SIZE)
    head.update(
        in_channels=[64, 128, 256, 512],
        feat_channels=channels,
        out_channels=channels,
        num_queries=8)
    head.positional_encoding.num_feats = channels // 2
    decoder = head.pixel_decoder
    decoder.norm_cfg = dict(type='GN', num_groups=8)
    decoder.positional_encoding.num_feats = channels // 2
    decoder.encoder.layer_cfg.self_attn_cfg.update(
        embed_dims=channels, num_heads=heads)
    decoder.encoder.layer_cfg.ffn_cfg.update(
        embed_dims=channels, feedforward_channels=2 * channels)
    transformer = head.transformer_decoder
    transformer.num_layers = 2
    for attn in ('self_attn_cfg', 'cross_attn_cfg'):
        transformer.layer_cfg[attn].update(
            embed_dims=channels, num_heads=heads)
    transformer.layer_cfg.ffn_cfg.update(
        embed_dims=channels, feedforward_channels=2 * channels)
    head.train_cfg.num_points = 256

    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
        cfg[loader].dataset.data_root = str(root)
        for transform in cfg[loader].dataset.pipeline:
            if transform.type == 'RandomChoiceResize':
                transform.scales = [SIZE, SIZE + 16]
            elif transform.type == 'RandomCrop':
                transform.crop_size = (SIZE, SIZE)
            elif transform.type == 'Resize':
                transform.scale = (4 * SIZE, SIZE)
    cfg.train_dataloader.batch_size = 2
    # Two iterations, then the loop's final validation; no checkpoints.
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(work_dir)
    return cfg


def test_proscale_semantic_train_and_miou(tmp_path, single_thread):
    root = tmp_path / 'ADEChallengeData2016'
    write_ade20k_semantic(root)
    runner = Runner.from_cfg(tiny_config(root, tmp_path / 'work_dir'))
    decoder = runner.model.decode_head.pixel_decoder
    assert type(decoder).__name__ == 'ProScalePixelDecoder'
    assert decoder.num_layers_per_stage == (3, 3, 3)
    assert type(runner.model.decode_head).__module__.startswith('mmseg')

    runner.train()
    assert runner.iter == 2
    assert 0 <= runner.message_hub.get_scalar('val/mIoU').current() <= 100
