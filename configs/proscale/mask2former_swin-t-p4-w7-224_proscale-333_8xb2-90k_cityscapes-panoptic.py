# PRO-SCALE (3, 3, 3) Swin-T on Cityscapes panoptic.
_base_ = [
    '../mask2former/'
    'mask2former_swin-t-p4-w7-224_8xb2-90k_cityscapes-panoptic.py',
    './_base_/proscale_pixel_decoder.py'
]
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

model = dict(
    panoptic_head=dict(pixel_decoder={{_base_.proscale_pixel_decoder}}))
