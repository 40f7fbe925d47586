# ECO-M2F parent (step A), R50, Cityscapes panoptic: the Mask2Former
# Cityscapes recipe whose 6-layer deformable encoder may exit after layer
# 2, ..., 6, trained with one exit per iteration and alpha_k = k.
_base_ = [
    '../mask2former/mask2former_r50_8xb2-90k_cityscapes-panoptic.py',
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
    # An int fixes the exit of tools/test.py; None runs all encoder layers.
    test_cfg=dict(exit_layer=None))
# Validation evaluates every exit in one pass: exit k's metrics as
# `exit{k}/...` and the deepest exit's under the usual names, so `save_best`
# can select on the full model ('coco_panoptic/PQ') or on any exit
# ('exit4/coco_panoptic/PQ'); see docs/eco_m2f.md.
val_cfg = dict(type='MultiExitValLoop', exits=None, main_exit=None)
