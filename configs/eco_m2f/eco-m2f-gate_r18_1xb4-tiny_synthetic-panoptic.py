# ECO-M2F step C for the tiny synthetic parent
# (eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py): its exit gate on the
# pooled projected 1/32 features (64 channels) picking exits 2..6, trained
# with tools/train.py on the parent's derived exit dataset (the demo writes
# it to work_dirs/demo/eco/derived_train.npz). Merge WORK_DIR/gate.pth into
# the parent with tools/eco/merge_gate.py and run it with
# eco-m2f-gated_r18_1xb4-tiny_synthetic-panoptic.py.
_base_ = './_base_/eco_m2f_gate.py'

derived_file = 'work_dirs/demo/eco/derived_train.npz'
model = dict(gate=dict(exits=(2, 3, 4, 5, 6), in_channels=64), beta=0.003)
train_dataloader = dict(dataset=dict(ann_file=derived_file))
val_dataloader = dict(dataset=dict(ann_file=derived_file))
test_dataloader = val_dataloader
