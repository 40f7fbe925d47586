# PRO-SCALE (3, 3, 3) R50 on Cityscapes panoptic: the Mask2Former Cityscapes
# recipe with the released PRO-SCALE pixel decoder (legacy-layout linear TRC,
# tau 0.1, light pixel embedding).
_base_ = [
    '../mask2former/mask2former_r50_8xb2-90k_cityscapes-panoptic.py',
    './_base_/proscale_pixel_decoder.py'
]
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

model = dict(
    panoptic_head=dict(pixel_decoder={{_base_.proscale_pixel_decoder}}))
