# ECO-M2F with its exit gate (step C) on COCO panoptic, R50: the parent plus
# an `ExitGate` on the pooled projected 1/32 features picking exits 2..6. Run
# it with the parent's checkpoint with a trained gate merged in
# (tools/eco/train_gate.py, e.g. --beta 0.0005 as the paper, then
# tools/eco/merge_gate.py); see docs/eco_gate.md.
_base_ = './eco-m2f-parent_r50_8xb2-lsj-50e_coco-panoptic.py'

model = dict(
    gate=dict(
        type='ExitGate',
        exits=(2, 3, 4, 5, 6),
        in_channels=256,
        hidden_channels=None),
    test_cfg=dict(exit_layer='gate'))
# validate the gated model itself, not the parent's exits
val_cfg = dict(_delete_=True, type='ValLoop')
