# PRO-SCALE pixel decoder as released by the authors: (3, 3, 3) stages, linear
# TRC with temperature 0.1 in the authors' token layout, light pixel embedding.
# Merged into a Mask2Former `panoptic_head.pixel_decoder` (which keeps its
# encoder `layer_cfg`, norms and positional encoding). `num_layers=None`:
# the encoder depth comes from `num_layers_per_stage`.
proscale_pixel_decoder = dict(
    type='ProScalePixelDecoder',
    num_layers_per_stage=(3, 3, 3),
    trc=dict(type='linear', temperature=0.1, layout='legacy'),
    pixel_embed='maxpool',
    residual=False,
    encoder=dict(num_layers=None))
