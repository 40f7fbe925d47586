# PRO-SCALE (3, 3, 3) R50 semantic segmentation on ADE20K: mmseg's Mask2Former
# recipe with the released PRO-SCALE pixel decoder, built from mmseg's
# Mask2FormerHead through mmdet's registry (the `mmdet.` scope).
_base_ = [
    '../mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    './_base_/proscale_pixel_decoder.py'
]

model = dict(
    decode_head=dict(
        pixel_decoder=dict(
            _base_.proscale_pixel_decoder,
            type='mmdet.ProScalePixelDecoder')))
