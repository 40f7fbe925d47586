# Copyright (c) The proscale Authors. All rights reserved.
"""Train a model (mmdet 3.3's ``tools/train.py`` interface).

Example:
    python tools/train.py configs/proscale/CONFIG.py --work-dir work_dirs/x
    python tools/train.py configs/proscale/CONFIG.py --max-iters 100
"""
import argparse
import os.path as osp

# Before torch: OpenMP threads wait passively (proscale.openmp_env).
import proscale  # noqa: F401 # isort: skip
from proscale.engine.hooks import add_random_state_hook
from proscale.utils.cli import (
    add_cfg_options_argument, add_launcher_arguments, add_max_iters_argument,
    build_runner, check_dataset_paths, load_config, parse_launcher_args,
    report_user_errors, set_work_dir)
from proscale.utils.work_dir_lock import WorkDirLock


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    add_max_iters_argument(parser)
    add_cfg_options_argument(parser)
    add_launcher_arguments(parser)
    return parse_launcher_args(parser)


def main() -> None:
    args = parse_args()
    with report_user_errors():
        cfg = load_config(args.config, args.cfg_options, args.max_iters)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.config, args.work_dir)
    add_random_state_hook(cfg)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SystemExit('error: --auto-scale-lr needs `auto_scale_lr` '
                             'with `base_batch_size` in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    with report_user_errors(cfg):
        if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint {args.resume} '
                                    'does not exist')
        check_dataset_paths(cfg, ('train_dataloader', 'val_dataloader'))
        with WorkDirLock(cfg.work_dir):
            runner = build_runner(cfg)
            runner.train()


if __name__ == '__main__':
    main()
