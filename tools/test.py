# Copyright (c) The proscale Authors. All rights reserved.
"""Test (and evaluate) a model (mmdet 3.3's ``tools/test.py`` interface).

Example:
    python tools/test.py configs/proscale/CONFIG.py CKPT --out results.pkl
"""
import argparse

# Before torch: OpenMP threads wait passively (proscale.openmp_env).
import proscale  # noqa: F401 # isort: skip
from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults

from proscale.utils.checkpoint_checks import (build_config_model,
                                              check_checkpoint_matches)
from proscale.utils.cli import (
    add_cfg_options_argument, add_launcher_arguments, build_runner,
    check_checkpoint, check_dataset_paths, load_config, parse_launcher_args,
    report_user_errors, set_work_dir)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file (.pkl or .pickle) for '
        'offline evaluation')
    parser.add_argument(
        '--non-strict',
        action='store_true',
        help='load a checkpoint that does not hold exactly the weights of '
        "the config's model (mmengine's default, with warnings); without "
        'it such a checkpoint is an error')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    add_cfg_options_argument(parser)
    add_launcher_arguments(parser)
    args = parse_launcher_args(parser)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out {args.out}: the dump file must be a .pkl or '
                     '.pickle file')
    return args


def main() -> None:
    args = parse_args()
    with report_user_errors():
        cfg = load_config(args.config, args.cfg_options)
        check_checkpoint(args.checkpoint)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.config, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    with report_user_errors(cfg):
        check_dataset_paths(cfg, ('test_dataloader', ))
        if not args.non_strict:
            check_checkpoint_matches(
                build_config_model(cfg), args.checkpoint)
        runner = build_runner(cfg)
        if args.out is not None:
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))
        runner.test()


if __name__ == '__main__':
    main()
