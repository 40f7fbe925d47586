# Swin-T DINO with the PRO-SCALE encoder: stages (1, 1, 2, 2) coarse to fine
# and spatial TRC, as the ResNet-50 PRO-SCALE DINO.
_base_ = './dino-4scale_swin-t-p4-w7-224_8xb2-12e_coco.py'

model = dict(
    type='ProScaleDINO',
    encoder=dict(
        num_layers=None,
        num_layers_per_stage=(1, 1, 2, 2),
        trc=dict(type='linear', temperature=0.1, layout='spatial')))
