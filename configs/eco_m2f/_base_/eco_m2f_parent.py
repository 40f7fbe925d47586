# ECO-M2F step A, training the parent with weighted stochastic depth: every
# iteration `ExitSamplingHook` draws `exits_per_iter` of the model's exits
# (the same on every rank, from the seed and the iteration). With
# sampling='alpha' (the default here) exit k is drawn with probability
# alpha_k / sum(alpha) ('linear': alpha_k = k) at unit loss weight, so alpha
# acts through the draws at one exit's cost, which Mask2Former's gradient
# norm clipping cannot cancel; sampling='uniform' is the authors' recipe
# (uniform draws, loss weighted by alpha_k, cancelled by the clipping for
# one exit per iteration). Measured comparison: docs/eco_m2f.md.
custom_hooks = [
    dict(
        type='ExitSamplingHook',
        loss_weights='linear',
        exits=None,
        exits_per_iter=1,
        sampling='alpha',
        seed=None)
]
# The encoder layers after the drawn exit get no gradient in an iteration.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
