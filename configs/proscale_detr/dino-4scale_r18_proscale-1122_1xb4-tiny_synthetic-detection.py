# The tiny DINO with the PRO-SCALE encoder: stages (1, 1, 2, 2) over the 4
# scales coarse to fine (1/64, 1/32, 1/16, 1/8) and spatial TRC; everything
# else, the recipe included, as the tiny DINO baseline.
_base_ = './dino-4scale_r18_1xb4-tiny_synthetic-detection.py'

model = dict(
    type='ProScaleDINO',
    encoder=dict(
        num_layers=None,
        num_layers_per_stage=(1, 1, 2, 2),
        trc=dict(type='linear', temperature=0.1, layout='spatial')))
