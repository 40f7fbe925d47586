# Mask2Former Swin-T semantic segmentation on ADE20K: mmseg's config and
# recipe, runnable with this project's tools (tools/train.py,
# tools/analysis/).
_base_ = ['mmseg::mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(
    imports=['proscale'], allow_failed_imports=False)

# mmdet's MSDeformAttnPixelDecoder on the fused CPU deformable attention
# kernel (same arguments, weights and outputs).
model = dict(
    decode_head=dict(
        pixel_decoder=dict(type='mmdet.FusedMSDeformAttnPixelDecoder')))

# The ADEChallengeData2016 folder of the panoptic configs (mmseg's default is
# data/ade/ADEChallengeData2016).
data_root = 'data/ADEChallengeData2016/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
