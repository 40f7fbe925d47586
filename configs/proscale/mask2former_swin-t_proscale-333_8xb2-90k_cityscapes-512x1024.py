# PRO-SCALE (3, 3, 3) Swin-T semantic segmentation on Cityscapes: mmseg's
# Mask2Former recipe with the released PRO-SCALE pixel decoder, built from
# mmseg's Mask2FormerHead through mmdet's registry (the `mmdet.` scope).
_base_ = [
    '../mask2former/mask2former_swin-t_8xb2-90k_cityscapes-512x1024.py',
    './_base_/proscale_pixel_decoder.py'
]

model = dict(
    decode_head=dict(
        pixel_decoder=dict(
            _base_.proscale_pixel_decoder,
            type='mmdet.ProScalePixelDecoder')))
