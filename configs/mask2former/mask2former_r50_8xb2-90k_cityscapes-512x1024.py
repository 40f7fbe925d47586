# Mask2Former R50 semantic segmentation on Cityscapes (mmseg's config and
# recipe), runnable with this project's tools (tools/train.py,
# tools/analysis/).
_base_ = ['mmseg::mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py']
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

# mmdet's MSDeformAttnPixelDecoder on the fused CPU deformable attention
# kernel (same arguments, weights and outputs).
model = dict(
    decode_head=dict(
        pixel_decoder=dict(type='mmdet.FusedMSDeformAttnPixelDecoder')))
