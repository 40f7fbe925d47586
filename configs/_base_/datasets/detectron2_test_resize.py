# detectron2's test-time input, exactly: the image decoded by PIL, its
# shortest edge resized to 800 (longest at most 1333, detectron2's rounding)
# with PIL's bilinear filter on uint8 (mmcv's `pillow` backend), as the
# authors' released checkpoints were evaluated (INPUT.MIN_SIZE_TEST 800,
# MAX_SIZE_TEST 1333). mmdet's default (cv2 decode, cv2 bilinear resize)
# gives a slightly different network input; see README "Use the released
# weights". Merge with `test_pipeline = {{_base_.detectron2_test_pipeline}}`.
detectron2_test_pipeline = [
    dict(
        type='LoadImageFromFile', imdecode_backend='pillow',
        backend_args=None),
    dict(
        type='ResizeShortestEdge',
        scale=800,
        max_size=1333,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='LoadPanopticAnnotations', backend_args=None),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
