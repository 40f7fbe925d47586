# ECO-M2F step A, training the parent with weighted stochastic depth: every
# iteration `ExitSamplingHook` draws `exits_per_iter` of the model's exits
# (the same on every rank, from the seed and the iteration) and weights each
# drawn exit's loss by alpha_k ('linear': alpha_k = k). With one exit per
# iteration (the authors' recipe) Mask2Former's gradient norm clipping
# cancels alpha_k; `exits_per_iter` > 1 keeps the weights effective, e.g.
# `--cfg-options custom_hooks.0.exits_per_iter=5` (see docs/eco_m2f.md).
custom_hooks = [
    dict(
        type='ExitSamplingHook',
        loss_weights='linear',
        exits=None,
        exits_per_iter=1,
        sampling='uniform',
        seed=None)
]
# The encoder layers after the drawn exit get no gradient in an iteration.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
