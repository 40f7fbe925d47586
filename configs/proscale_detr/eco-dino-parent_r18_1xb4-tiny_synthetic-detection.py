# The tiny synthetic ECO-DINO parent: the tiny DINO with mmdet's 6-layer
# encoder made early-exit (exits 2..6), trained with weighted stochastic
# depth as the ECO-M2F parents are (one exit per iteration, drawn with
# probability proportional to alpha_k = k). Used by the tests and
# docs/detection.md.
_base_ = [
    './dino-4scale_r18_1xb4-tiny_synthetic-detection.py',
    '../eco_m2f/_base_/eco_m2f_parent.py'
]
custom_imports = dict(imports=['proscale'], allow_failed_imports=False)

model = dict(
    type='EcoDINO',
    # (0, 0, 0, 6) without TRC is mmdet's 6-layer encoder; exit_layers=None
    # gives ECO-M2F's exits (2, ..., 6).
    encoder=dict(num_layers=None, num_layers_per_stage=(0, 0, 0, 6), trc=None),
    exit_layers=None,
    # exit_layer: an int fixes the exit of tools/test.py (None: all layers).
    test_cfg=dict(exit_layer=None))
# Validation evaluates every exit in one pass: exit k's box AP as
# `exit{k}/coco/bbox_mAP` and the deepest exit's as `coco/bbox_mAP`.
val_cfg = dict(type='MultiExitValLoop', exits=None, main_exit=None)
