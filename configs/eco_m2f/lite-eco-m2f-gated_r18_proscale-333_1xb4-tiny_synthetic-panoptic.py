# The tiny synthetic Lite-ECO-M2F with its exit gate (step C): the PRO-SCALE
# (3, 3, 3) parent plus an `ExitGate` picking among the last stage's exits
# 7, 8, 9. Run it with the parent's checkpoint with the trained gate merged
# in (tools/eco/merge_gate.py); see docs/eco_gate.md.
_base_ = ('./lite-eco-m2f-parent_r18_proscale-333_1xb4-tiny_'
          'synthetic-panoptic.py')

model = dict(
    gate=dict(
        type='ExitGate', exits=(7, 8, 9), in_channels=64,
        hidden_channels=None),
    test_cfg=dict(exit_layer='gate'))
# validate the gated model itself, not the parent's exits
val_cfg = dict(_delete_=True, type='ValLoop')
