# Deformable DETR baseline (two-stage, box refinement; COCO detection,
# ResNet-50): mmdet's 50e recipe unchanged.
_base_ = ('mmdet::deformable_detr/'
          'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py')
custom_imports = dict(imports=['proscale'], allow_failed_imports=False)
