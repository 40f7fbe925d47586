# ECO-M2F step C for the COCO panoptic R50 parent
# (eco-m2f-parent_r50_8xb2-lsj-50e_coco-panoptic.py): its exit gate on the
# pooled projected 1/32 features (256 channels) picking exits 2..6, with the
# paper's beta 0.0005, trained with tools/train.py on the parent's derived
# exit dataset of train2017. Merge WORK_DIR/gate.pth into the parent with
# tools/eco/merge_gate.py and run it with
# eco-m2f-gated_r50_8xb2-lsj-50e_coco-panoptic.py.
_base_ = './_base_/eco_m2f_gate.py'

derived_file = 'work_dirs/eco_m2f_r50_coco/derived_train.npz'
model = dict(gate=dict(exits=(2, 3, 4, 5, 6), in_channels=256), beta=0.0005)
train_dataloader = dict(dataset=dict(ann_file=derived_file))
val_dataloader = dict(dataset=dict(ann_file=derived_file))
test_dataloader = val_dataloader
