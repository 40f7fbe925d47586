# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F step B: derive the per-image, per-exit quality dataset of a split.

Runs ``DeriveExitDatasetLoop`` (projects/proscale/engine/loops/
derive_exit_dataset_loop.py) on an early-exit parent: per-image PQ/SQ/RQ of
an ``EcoMask2Former``, per-image box AP/AP50/AP75 of an ``EcoDINO``. The
output format is described in docs/eco_derived_dataset.md.

Examples:
    python tools/eco/derive_exit_dataset.py CONFIG CKPT --out derived.npz
    python tools/eco/derive_exit_dataset.py CONFIG CKPT --out derived.npz \
        --resume
    torchrun --nproc_per_node 8 tools/eco/derive_exit_dataset.py CONFIG CKPT \
        --out derived.npz --launcher pytorch

Without CUDA, ``--launcher pytorch`` runs the ranks on CPU with gloo.
"""
import argparse
import os.path as osp

# Before torch: OpenMP threads wait passively (proscale.openmp_env).
import proscale  # noqa: F401 # isort: skip
from mmengine.registry import LOOPS

from proscale.engine.loops import (
    derive_exit_dataset_loop as derivation)
from proscale.utils.cli import (
    add_cfg_options_argument, add_launcher_arguments, build_runner,
    check_checkpoint, check_dataset_paths, load_config, parse_launcher_args,
    report_user_errors)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Derive the ECO-M2F exit dataset: per-image quality '
        '(PQ/SQ/RQ of a panoptic parent, box AP/AP50/AP75 of a detector) at '
        'every encoder exit, and the gate inputs')
    parser.add_argument('config', help='config of the early-exit parent')
    parser.add_argument('checkpoint', help='checkpoint of the parent')
    parser.add_argument('--out', required=True, help='output .npz file')
    parser.add_argument(
        '--split',
        choices=derivation.SPLITS,
        default='train',
        help='derive the training split (with the test pipeline) or the '
        'validation split')
    parser.add_argument(
        '--exits',
        type=int,
        nargs='+',
        help='exits to evaluate (default: the model\'s exit_layers)')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='continue an interrupted run with the same settings instead of '
        'starting over')
    parser.add_argument(
        '--save-interval',
        type=int,
        default=100,
        help='images per rank between two partial-result files')
    parser.add_argument('--work-dir', help='folder for the logs')
    add_cfg_options_argument(parser)
    add_launcher_arguments(parser)
    return parse_launcher_args(parser)


def main() -> None:
    args = parse_args()
    with report_user_errors():
        cfg = load_config(args.config, args.cfg_options)
        check_checkpoint(args.checkpoint)
    if 'panoptic_fusion_head' in cfg.model:
        # Only the panoptic output is scored; it does not depend on these.
        cfg.model.setdefault('test_cfg', {}).update(
            instance_on=False, semantic_on=False)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    cfg.work_dir = args.work_dir or osp.join(
        './work_dirs', 'derive_exit_dataset',
        osp.splitext(osp.basename(args.config))[0])

    with report_user_errors(cfg):
        check_dataset_paths(cfg, (f'{args.split}_dataloader', ))
        dataloader = derivation.derive_dataloader_cfg(cfg, args.split)
        runner = build_runner(cfg)
        loop = LOOPS.build(
            dict(
                type='DeriveExitDatasetLoop',
                dataloader=dataloader,
                out_file=args.out,
                split=args.split,
                exits=args.exits,
                resume=args.resume,
                save_interval=args.save_interval),
            default_args=dict(runner=runner))
        runner.call_hook('before_run')
        # Strict: a checkpoint of another architecture must not half-load.
        runner.load_checkpoint(args.checkpoint, strict=True)
        loop.run()
        runner.call_hook('after_run')


if __name__ == '__main__':
    main()
