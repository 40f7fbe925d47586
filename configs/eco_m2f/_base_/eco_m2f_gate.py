# ECO-M2F step C as an mmengine run: train the exit gate on a derived exit
# dataset (step B's .npz, tools/eco/derive_exit_dataset.py) with
# tools/train.py. The gate learns each image's exit of highest utility
# q_k - beta * k on the training share of the file and is validated on the
# held-out share (the split of tools/eco/train_gate.py: val_fraction and
# seed). The gate inputs are standardised while training; the gate file
# WORK_DIR/gate.pth, written at the end with the standardisation folded in,
# runs on raw features (tools/eco/merge_gate.py). The gate configs set the
# parent's exits and gate input width and the derived file; see
# docs/eco_gate.md.
custom_imports = dict(imports=['proscale'], allow_failed_imports=False)
default_scope = 'mmdet'

model = dict(
    type='ExitGateModel',
    # gate input: input_levels encoder scales (in_channels counts them
    # all) after input_depth encoder layers; the datasets read the same.
    gate=dict(
        type='ExitGate',
        exits=(2, 3, 4, 5, 6),
        in_channels=256,
        hidden_channels=None,
        input_levels=1,
        input_depth=0),
    beta=0.003,
    # 'hard_ce' (the paper's), 'soft_ce' or 'soft_mse'
    loss='hard_ce',
    temperature=0.05)

derived_dataset = dict(
    type='ExitGateDataset',
    ann_file='work_dirs/eco/derived_train.npz',
    metric='pq',
    group='All',
    input_levels=1,
    input_depth=0,
    val_fraction=0.2,
    seed=0)
train_dataloader = dict(
    # ExitGateBatchSampler yields whole batches; the dataset stacks them.
    batch_size=None,
    num_workers=0,
    sampler=dict(type='ExitGateBatchSampler', batch_size=256, shuffle=True),
    collate_fn=dict(type='exit_gate_collate'),
    dataset=dict(derived_dataset, split='train'))
val_dataloader = dict(
    batch_size=None,
    num_workers=0,
    sampler=dict(type='ExitGateBatchSampler', batch_size=256, shuffle=False),
    collate_fn=dict(type='exit_gate_collate'),
    dataset=dict(derived_dataset, split='val'))
test_dataloader = val_dataloader
# exit_gflops: the model's GFLOPs at every exit (tools/analysis/get_flops.py
# or tools/eco/eval_exits.py) to report the expected GFLOPs too.
val_evaluator = dict(type='ExitGateMetric', exit_gflops=None)
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=500, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-2, weight_decay=1e-4, fused=True))
param_scheduler = []

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100),
    # ExitGateBatchSampler reshuffles by itself (no set_epoch)
    sampler_seed=None)
# standardisation statistics, one torch thread, WORK_DIR/gate.pth
custom_hooks = [dict(type='ExitGateTrainingHook', out_file='gate.pth')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
