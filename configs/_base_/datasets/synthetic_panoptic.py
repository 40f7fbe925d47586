# The embedded synthetic panoptic dataset (COCO panoptic format). Generate it
# with `python tools/dataset_converters/generate_synthetic_panoptic.py
# data/synthetic`. `metainfo` restates
# `proscale.datasets.SYNTHETIC_PANOPTIC_METAINFO` (a test checks that
# they are equal); category ids are the class indices + 1.
dataset_type = 'CocoPanopticDataset'
data_root = 'data/synthetic/'
metainfo = dict(
    classes=('circle', 'square', 'triangle', 'cross', 'plain', 'stripes',
             'checker', 'noise'),
    thing_classes=('circle', 'square', 'triangle', 'cross'),
    stuff_classes=('plain', 'stripes', 'checker', 'noise'),
    palette=[(220, 20, 60), (0, 128, 255), (255, 165, 0), (50, 205, 50),
             (128, 128, 128), (148, 0, 211), (0, 139, 139), (139, 69, 19)])
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# The images are tiny: loading them in the main process is cheaper than
# feeding worker processes on a small CPU machine.
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = [
    dict(
        type='CocoPanopticMetric',
        ann_file=data_root + 'annotations/panoptic_val.json',
        seg_prefix=data_root + 'annotations/panoptic_val/',
        backend_args=backend_args),
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val.json',
        metric=['bbox', 'segm'],
        backend_args=backend_args)
]
test_evaluator = val_evaluator
