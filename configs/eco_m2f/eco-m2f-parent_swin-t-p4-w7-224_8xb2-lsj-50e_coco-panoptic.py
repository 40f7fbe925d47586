# ECO-M2F parent (step A), Swin-T, COCO panoptic (the paper's main setting).
_base_ = [
    '../mask2former/'
    'mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py',
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
    test_cfg=dict(exit_layer=None))
# Validation evaluates every exit in one pass: exit k's metrics as
# `exit{k}/...` and the deepest exit's under the usual names, so `save_best`
# can select on the full model ('coco_panoptic/PQ') or on any exit
# ('exit4/coco_panoptic/PQ'); see docs/eco_m2f.md.
val_cfg = dict(type='MultiExitValLoop', exits=None, main_exit=None)
