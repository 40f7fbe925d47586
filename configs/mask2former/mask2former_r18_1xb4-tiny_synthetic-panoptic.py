# A tiny Mask2Former for the embedded synthetic panoptic dataset: a
# half-width ResNet-18 (32 base channels) trained from scratch, 128x128
# inputs, 64-d features, the baseline 6-layer deformable encoder (mmdet's
# `MSDeformAttnPixelDecoder` on the fused CPU kernel), 3 decoder layers and
# 32 queries. The encoder is a large share of the compute, as in Mask2Former
# on COCO. Trains on 2 CPU cores in a few minutes. The tiny PRO-SCALE and
# ECO-M2F configs inherit this file and change only what their method
# changes.
_base_ = [
    'mmdet::_base_/default_runtime.py',
    '../_base_/datasets/synthetic_panoptic.py'
]
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

num_things_classes = 4
num_stuff_classes = 4
num_classes = num_things_classes + num_stuff_classes
feat_channels = 64
num_heads = 4

data_preprocessor = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32,
    pad_mask=True,
    mask_pad_value=0,
    pad_seg=True,
    seg_pad_value=255)

model = dict(
    type='Mask2Former',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=32,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    panoptic_head=dict(
        type='Mask2FormerHead',
        in_channels=[32, 64, 128, 256],
        strides=[4, 8, 16, 32],
        feat_channels=feat_channels,
        out_channels=feat_channels,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries=32,
        num_transformer_feat_level=3,
        pixel_decoder=dict(
            type='FusedMSDeformAttnPixelDecoder',
            num_outs=3,
            norm_cfg=dict(type='GN', num_groups=16),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=dict(
                        embed_dims=feat_channels,
                        num_heads=num_heads,
                        num_levels=3,
                        num_points=4,
                        dropout=0.0,
                        batch_first=True),
                    ffn_cfg=dict(
                        embed_dims=feat_channels,
                        feedforward_channels=feat_channels * 4,
                        num_fcs=2,
                        ffn_drop=0.0,
                        act_cfg=dict(type='ReLU', inplace=True)))),
            positional_encoding=dict(
                num_feats=feat_channels // 2, normalize=True)),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=feat_channels // 2, normalize=True),
        transformer_decoder=dict(
            return_intermediate=True,
            num_layers=3,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=feat_channels,
                    num_heads=num_heads,
                    dropout=0.0,
                    batch_first=True),
                cross_attn_cfg=dict(
                    embed_dims=feat_channels,
                    num_heads=num_heads,
                    dropout=0.0,
                    batch_first=True),
                ffn_cfg=dict(
                    embed_dims=feat_channels,
                    feedforward_channels=feat_channels * 4,
                    num_fcs=2,
                    ffn_drop=0.0,
                    act_cfg=dict(type='ReLU', inplace=True))),
            init_cfg=None),
        loss_cls=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=2.0,
            reduction='mean',
            class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(
            type='CrossEntropyLoss',
            use_sigmoid=True,
            reduction='mean',
            loss_weight=5.0),
        loss_dice=dict(
            type='DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=5.0)),
    panoptic_fusion_head=dict(
        type='MaskFormerFusionHead',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        loss_panoptic=None,
        init_cfg=None),
    train_cfg=dict(
        num_points=1024,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=2.0),
                dict(
                    type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
                dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)
            ]),
        sampler=dict(type='MaskPseudoSampler')),
    # object_mask_thr: the score a query needs to enter the panoptic (and
    # instance) prediction. mmdet's 0.8 suits fully trained models; the
    # tiny models trained for a few hundred iterations score lower, and at
    # 0.8 they drop nearly every stuff segment (Stuff PQ 0). 0.25 is the
    # threshold of every tiny synthetic config (baseline, PRO-SCALE,
    # ECO-M2F parent and gated, Lite-ECO-M2F), hence of tools/test.py,
    # tools/eco/eval_exits.py, derive_exit_dataset.py and sweep_beta.py.
    test_cfg=dict(
        panoptic_on=True,
        semantic_on=False,
        instance_on=True,
        max_per_image=50,
        object_mask_thr=0.25,
        iou_thr=0.8,
        filter_low_score=True),
    init_cfg=None)

# Everything is trained from scratch, so the backbone keeps the full lr.
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=0.0005,
        weight_decay=0.05,
        eps=1e-8,
        betas=(0.9, 0.999),
        fused=True),
    paramwise_cfg=dict(
        custom_keys={
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        },
        norm_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2))

max_iters = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - 20,
        eta_min_ratio=0.01,
        by_epoch=False,
        begin=20,
        end=max_iters)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=100,
        save_last=True,
        max_keep_ckpts=2))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=4)
# A fixed seed makes the tiny runs (tests, demo) repeatable on one machine.
randomness = dict(seed=0)
