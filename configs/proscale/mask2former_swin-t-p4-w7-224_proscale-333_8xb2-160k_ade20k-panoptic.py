# PRO-SCALE (3, 3, 3) Swin-T on ADE20K panoptic: the Mask2Former ADE20K recipe
# with the released PRO-SCALE pixel decoder.
_base_ = [
    '../mask2former/'
    'mask2former_swin-t-p4-w7-224_8xb2-160k_ade20k-panoptic.py',
    './_base_/proscale_pixel_decoder.py'
]
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

model = dict(
    panoptic_head=dict(pixel_decoder={{_base_.proscale_pixel_decoder}}))
