# The tiny synthetic ECO-M2F parent: the tiny Mask2Former with the early-exit
# 6-layer encoder (exits 2..6), trained with one exit per iteration and
# alpha_k = k. Used by the tests and the demo.
_base_ = [
    '../mask2former/mask2former_r18_1xb4-tiny_synthetic-panoptic.py',
    './_base_/eco_m2f_parent.py'
]
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

model = dict(
    type='EcoMask2Former',
    panoptic_head=dict(
        type='EcoMask2FormerHead',
        pixel_decoder=dict(
            type='EarlyExitMSDeformAttnPixelDecoder', exit_layers=None)),
    # exit_layer: an int fixes the exit of tools/test.py (None: all layers);
    # object_mask_thr (0.25) comes from the tiny base config.
    test_cfg=dict(exit_layer=None))
# Validation evaluates every exit in one pass: exit k's metrics as
# `exit{k}/...` and the deepest exit's under the usual names, so `save_best`
# can select on the full model ('coco_panoptic/PQ') or on any exit
# ('exit4/coco_panoptic/PQ'); see docs/eco_m2f.md.
val_cfg = dict(type='MultiExitValLoop', exits=None, main_exit=None)
# Keep the best checkpoint of the full model (the main exit); select on
# another exit with e.g. `default_hooks.checkpoint.save_best=
# exit4/coco_panoptic/PQ`.
default_hooks = dict(
    checkpoint=dict(save_best='coco_panoptic/PQ', rule='greater'))
