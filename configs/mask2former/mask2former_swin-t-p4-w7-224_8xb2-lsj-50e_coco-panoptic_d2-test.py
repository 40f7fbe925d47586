# Mask2Former Swin-T COCO panoptic, evaluated with detectron2's exact test-time
# resize (PIL bilinear, shortest edge 800 / longest 1333), as the authors'
# released weights were.
# Convert the weights with tools/model_converters/detectron2_to_proscale.py.
_base_ = [
    './mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py',
    '../_base_/datasets/detectron2_test_resize.py'
]
test_pipeline = {{_base_.detectron2_test_pipeline}}
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
