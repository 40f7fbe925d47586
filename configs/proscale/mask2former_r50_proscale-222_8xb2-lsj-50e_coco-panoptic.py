_base_ = './mask2former_r50_proscale-333_8xb2-lsj-50e_coco-panoptic.py'

model = dict(
    panoptic_head=dict(pixel_decoder=dict(num_layers_per_stage=(2, 2, 2))))
