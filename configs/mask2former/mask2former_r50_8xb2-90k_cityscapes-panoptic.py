# Mask2Former R50 on Cityscapes panoptic (8 thing + 11 stuff classes), the
# recipe of Mask2Former's `cityscapes/panoptic-segmentation/
# maskformer2_R50_bs16_90k.yaml`: SyncBN backbone (trainable), 100 queries,
# shortest side in {512, 614, ..., 2048} (longest <= 4096), 512x1024 crops,
# SSD colour jitter, flips; batch 16, AdamW lr 1e-4, poly decay over 90k
# iterations; single-scale test at 1024x2048 (overlap / object-mask
# thresholds 0.8). The reference trains with AMP: add `--amp` to
# tools/train.py. Prepare the data with
# `python tools/dataset_converters/cityscapes_panoptic.py data/cityscapes`.
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py']
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

num_things_classes = 8
num_stuff_classes = 11
num_classes = num_things_classes + num_stuff_classes
crop_size = (512, 1024)  # (h, w)

data_preprocessor = dict(batch_augments=[
    dict(
        type='BatchFixedSizePad',
        size=crop_size,
        img_pad_value=0,
        pad_mask=True,
        mask_pad_value=0,
        pad_seg=True,
        seg_pad_value=255)
])
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        norm_cfg=dict(type='SyncBN', requires_grad=True), norm_eval=False),
    panoptic_head=dict(
        # mmdet's decoder on the fused CPU deformable attention kernel.
        pixel_decoder=dict(type='FusedMSDeformAttnPixelDecoder'),
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    test_cfg=dict(
        panoptic_on=True,
        semantic_on=False,
        instance_on=False,
        iou_thr=0.8,
        object_mask_thr=0.8))

# dataset settings
dataset_type = 'CityscapesPanopticDataset'
data_root = 'data/cityscapes/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args=backend_args),
    dict(
        type='LoadPanopticAnnotations',
        with_bbox=True,
        with_mask=True,
        with_seg=True,
        backend_args=backend_args),
    # Shortest-edge resize: with the long side capped at 4096, a 1024x2048
    # image is scaled to exactly the sampled short side.
    dict(
        type='RandomChoiceResize',
        scales=[(4096, int(1024 * x * 0.1)) for x in range(5, 21)],
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size=crop_size[::-1],  # (w, h)
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='PhotoMetricDistortion'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
# No image is filtered out: detectron2 keeps images without things for
# panoptic training, too.
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/cityscapes_panoptic_train.json',
        data_prefix=dict(
            img='leftImg8bit/train/',
            seg='annotations/cityscapes_panoptic_train/'),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/cityscapes_panoptic_val.json',
        data_prefix=dict(
            img='leftImg8bit/val/',
            seg='annotations/cityscapes_panoptic_val/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# mmdet's COCO-panoptic PQ and the official cityscapesscripts PQ (the numbers
# to report: `cityscapes_panoptic/PQ`).
val_evaluator = [
    dict(
        type='CocoPanopticMetric',
        ann_file=data_root + 'annotations/cityscapes_panoptic_val.json',
        seg_prefix=data_root + 'annotations/cityscapes_panoptic_val/',
        backend_args=backend_args),
    dict(
        type='CityscapesPanopticMetric',
        gt_json_file=data_root + 'gtFine/cityscapes_panoptic_val.json')
]
test_evaluator = val_evaluator

# learning policy: poly decay, no warm-up, 90k iterations at batch 16
max_iters = 90000
interval = 5000
param_scheduler = dict(
    _delete_=True,
    type='PolyLR',
    eta_min=0,
    power=0.9,
    begin=0,
    end=max_iters,
    by_epoch=False)
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=None)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        save_last=True,
        max_keep_ckpts=3,
        interval=interval,
        save_best='cityscapes_panoptic/PQ',
        rule='greater'))
