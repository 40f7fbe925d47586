_base_ = ('./mask2former_swin-t-p4-w7-224_proscale-333_'
          '8xb2-lsj-50e_coco-panoptic.py')

model = dict(
    panoptic_head=dict(pixel_decoder=dict(num_layers_per_stage=(1, 1, 4))))
