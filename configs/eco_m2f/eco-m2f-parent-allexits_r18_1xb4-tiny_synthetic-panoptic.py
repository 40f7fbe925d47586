# The tiny synthetic ECO-M2F parent trained at every exit every iteration
# (loss sum_k k * L_k), the variant whose weights survive gradient clipping.
_base_ = ['./eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py']

custom_hooks = [
    dict(
        type='ExitSamplingHook',
        loss_weights='linear',
        exits=None,
        exits_per_iter=5,
        sampling='uniform',
        seed=None)
]
