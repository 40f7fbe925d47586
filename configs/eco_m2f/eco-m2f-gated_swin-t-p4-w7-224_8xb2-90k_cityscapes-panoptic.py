# ECO-M2F with its exit gate (step C) on Cityscapes panoptic, Swin-T: the
# parent plus an `ExitGate` picking exits 2..6 (the paper trains it with
# beta 0.003 and 0.01). Run it with the parent's checkpoint with the trained
# gate merged in (tools/eco/merge_gate.py); see docs/eco_gate.md.
_base_ = './eco-m2f-parent_swin-t-p4-w7-224_8xb2-90k_cityscapes-panoptic.py'

model = dict(
    gate=dict(
        type='ExitGate',
        exits=(2, 3, 4, 5, 6),
        in_channels=256,
        hidden_channels=None),
    test_cfg=dict(exit_layer='gate'))
# validate the gated model itself, not the parent's exits
val_cfg = dict(_delete_=True, type='ValLoop')
