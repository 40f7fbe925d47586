# Mask2Former baseline (COCO instance, Swin-T): mmdet's recipe unchanged.
# Importing proscale applies the stack's compatibility fixes and
# registers this project's modules.
_base_ = ('mmdet::mask2former/'
          'mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py')
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

# mmdet's MSDeformAttnPixelDecoder on the fused CPU deformable attention
# kernel (same arguments, weights and outputs).
model = dict(
    panoptic_head=dict(
        pixel_decoder=dict(type='FusedMSDeformAttnPixelDecoder')))
