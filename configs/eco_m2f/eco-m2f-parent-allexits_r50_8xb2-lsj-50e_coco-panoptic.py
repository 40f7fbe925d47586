# ECO-M2F parent, R50, COCO panoptic, with every exit trained every iteration:
# one backbone and encoder pass, the decoder at exits 2..6 and the loss
# sum_k k * L_k. Unlike one weighted exit per iteration, the weights survive
# Mask2Former's gradient norm clipping (see docs/eco_m2f.md); the iteration
# costs about one extra decoder and loss per exit.
_base_ = ['./eco-m2f-parent_r50_8xb2-lsj-50e_coco-panoptic.py']

custom_hooks = [
    dict(
        type='ExitSamplingHook',
        loss_weights='linear',
        exits=None,
        exits_per_iter=5,
        sampling='uniform',
        seed=None)
]
