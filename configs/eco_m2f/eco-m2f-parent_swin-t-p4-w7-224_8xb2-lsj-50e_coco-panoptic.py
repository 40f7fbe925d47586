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
