# DINO with the PRO-SCALE encoder (COCO detection, ResNet-50): stages
# (1, 1, 2, 2) over the scales 1/64, 1/32, 1/16, 1/8 (coarse to fine) and
# spatial TRC; mmdet's 12e recipe otherwise unchanged.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['proscale'], allow_failed_imports=False)

model = dict(
    type='ProScaleDINO',
    encoder=dict(
        num_layers=None,
        num_layers_per_stage=(1, 1, 2, 2),
        trc=dict(type='linear', temperature=0.1, layout='spatial')))
