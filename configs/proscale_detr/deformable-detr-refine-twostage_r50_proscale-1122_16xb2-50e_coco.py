# Deformable DETR (two-stage, box refinement; COCO detection, ResNet-50) with
# the PRO-SCALE encoder: stages (1, 1, 2, 2) over the scales 1/64, 1/32,
# 1/16, 1/8 (coarse to fine) and spatial TRC; mmdet's 50e recipe otherwise
# unchanged.
_base_ = ('mmdet::deformable_detr/'
          'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py')
custom_imports = dict(imports=['proscale'], allow_failed_imports=False)

model = dict(
    type='ProScaleDeformableDETR',
    encoder=dict(
        num_layers=None,
        num_layers_per_stage=(1, 1, 2, 2),
        trc=dict(type='linear', temperature=0.1, layout='spatial')))
