# The tiny synthetic Mask2Former with the PRO-SCALE (3, 3, 3) pixel decoder;
# everything else is identical to the tiny baseline.
_base_ = [
    '../mask2former/mask2former_r18_1xb4-tiny_synthetic-panoptic.py',
    './_base_/proscale_pixel_decoder.py'
]
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

model = dict(
    panoptic_head=dict(pixel_decoder={{_base_.proscale_pixel_decoder}}))
