# DINO baseline (COCO detection, ResNet-50, 4 scales): mmdet's 12e recipe
# unchanged. Importing proscale applies the stack's compatibility fixes and
# registers this project's modules.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['proscale'], allow_failed_imports=False)
