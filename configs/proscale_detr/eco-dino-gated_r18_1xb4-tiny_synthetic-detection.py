# The tiny synthetic ECO-DINO with its exit gate (step C): the tiny parent
# plus an `ExitGate` on the pooled coarsest encoder input (the neck's 1/64
# output, 256 channels) that picks each image's exit among 2..6. Run it with
# a checkpoint that has the trained gate merged in (tools/eco/train_gate.py,
# then tools/eco/merge_gate.py).
_base_ = './eco-dino-parent_r18_1xb4-tiny_synthetic-detection.py'

model = dict(
    gate=dict(
        type='ExitGate',
        exits=(2, 3, 4, 5, 6),
        in_channels=256,
        hidden_channels=None),
    test_cfg=dict(exit_layer='gate'))
# validate the gated model itself, not the parent's exits
val_cfg = dict(_delete_=True, type='ValLoop')
