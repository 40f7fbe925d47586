# Copyright (c) The proscale Authors. All rights reserved.
"""Evaluate every encoder exit of an ECO-M2F parent in one pass.

Each test image goes through the backbone and the encoder once and is decoded
at every exit (``MultiExitTestLoop``); each exit has its own copy of the
config's test evaluator. Prints PQ/SQ/RQ (and AP / mIoU where the config
evaluates them) per exit, with the GFLOPs of each exit (papers' convention,
averaged over ``--flops-images`` test images).

With ``--oracle`` the same pass (``ExitPolicyTestLoop``, one process) also
evaluates the per-image oracle, every image at the exit of its best own PQ,
and compares it with the fixed-exit curve at its GFLOPs; ``--plot`` draws
the fixed exits and the oracle (``sweep_beta.py`` adds the gates).

Example:
    python tools/eco/eval_exits.py \
        configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py \
        work_dirs/eco/iter_300.pth --json work_dirs/eco/exits.json
"""
import argparse
from typing import Dict, List, Optional

# Before torch: OpenMP threads wait passively (proscale.openmp_env).
import proscale  # noqa: F401 # isort: skip
from mmengine.dist import is_main_process

from proscale.analysis.exit_flops import ImageGFlops, count_exit_flops
from proscale.eco.gate_sweep import format_sweep, plot_sweep, sweep_rows
from proscale.engine.loops import split_exit_metrics, split_policy_metrics
from proscale.utils.cli import (
    add_cfg_options_argument, add_flops_images_argument,
    add_launcher_arguments, build_runner, check_checkpoint,
    check_dataset_paths, dump_json, load_config, parse_launcher_args,
    report_user_errors, set_work_dir)

# Metric columns, matched against the last part of the evaluators' keys
# (e.g. 'coco_panoptic/PQ'), in this order when present.
COLUMNS = ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st', 'bbox_mAP', 'segm_mAP', 'AP',
           'mIoU')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Evaluate every exit of an early-exit (ECO-M2F) model '
        'in one pass over the test set')
    parser.add_argument('config', help='config file of the parent')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--exits',
        type=int,
        nargs='+',
        help='exits to evaluate (default: all of the model)')
    add_flops_images_argument(parser, zero_means='skips the count')
    parser.add_argument('--json', help='write the per-exit results here')
    parser.add_argument(
        '--oracle',
        action='store_true',
        help='also evaluate the per-image oracle (each image at the exit of '
        'its best own PQ; needs the ground-truth panoptic PNGs)')
    parser.add_argument(
        '--plot', help='with --oracle: plot PQ vs GFLOPs to this PNG')
    parser.add_argument(
        '--work-dir', help='directory for the logs of the evaluation')
    add_cfg_options_argument(parser)
    add_launcher_arguments(parser)
    args = parse_launcher_args(parser, argv)
    if args.plot and not args.oracle:
        parser.error('--plot needs --oracle')
    if args.oracle and args.launcher != 'none':
        parser.error('--oracle runs in one process (--launcher none)')
    return args


def format_table(per_exit: Dict[int, dict],
                 flops: Dict[int, Dict[str, float]]) -> str:
    """Format the per-exit metrics and GFLOPs as a text table."""
    names = {
        k: {
            key.rsplit('/', 1)[-1]: key
            for key in metrics
        }
        for k, metrics in per_exit.items()
    }
    columns = [
        c for c in COLUMNS
        if all(c in exit_names for exit_names in names.values())
    ]
    header = ['exit'] + columns
    if flops:
        header += ['GFLOPs', 'enc GFLOPs']
    rows = []
    for k, metrics in per_exit.items():
        row = [str(k)
               ] + [f'{float(metrics[names[k][c]]):.3f}' for c in columns]
        if flops:
            row += [f"{flops[k]['total']:.3f}", f"{flops[k]['encoder']:.3f}"]
        rows.append(row)
    widths = [
        max(len(line[i]) for line in [header] + rows)
        for i in range(len(header))
    ]
    return '\n'.join('  '.join(
        cell.rjust(width) for cell, width in zip(line, widths))
                     for line in [header] + rows)


def main(argv: Optional[List[str]] = None) -> Dict[int, dict]:
    args = parse_args(argv)
    with report_user_errors():
        cfg = load_config(args.config, args.cfg_options)
        check_checkpoint(args.checkpoint)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.config, args.work_dir, 'eval_exits')
    cfg.load_from = args.checkpoint
    cfg.test_cfg = dict(type='MultiExitTestLoop', exits=args.exits)
    if args.oracle:
        cfg.test_cfg = dict(
            type='ExitPolicyTestLoop', exits=args.exits, oracle=True)

    with report_user_errors(cfg):
        check_dataset_paths(cfg, ('test_dataloader', ))
        runner = build_runner(cfg)
        metrics = runner.test()
        per_exit = split_exit_metrics(metrics)
    if not is_main_process():
        return per_exit

    flops = count_exit_flops(runner.test_loop.model,
                             runner.test_loop.dataloader, list(per_exit),
                             args.flops_images) if args.flops_images else {}
    print(format_table(per_exit, flops))
    results = {
        str(k): dict(exit_metrics, gflops=flops[k]) if flops else exit_metrics
        for k, exit_metrics in per_exit.items()
    }
    summary = dict(
        config=args.config, checkpoint=args.checkpoint, exits=results)
    if args.oracle:
        summary['policies'] = _oracle_rows(runner.test_loop, metrics,
                                           args.flops_images)
        print(format_sweep(summary['policies']))
        if args.plot:
            plot_sweep(summary['policies'], args.plot,
                       'fixed exits and per-image oracle')
    dump_json(summary, args.json)
    return per_exit


def _oracle_rows(loop, metrics: Dict[str, float],
                 flops_images: int) -> List[dict]:
    """Rows of the fixed exits and the oracle, compared at their GFLOPs
    (per image, each at its own size and exit) or mean depths."""
    gflops = None
    if flops_images:
        image_gflops = ImageGFlops(loop.model)
        gflops = {
            name: image_gflops.mean(images[:flops_images])
            for name, images in loop.image_exits.items()
        }
    return sweep_rows(
        split_policy_metrics(metrics), loop.exit_counts, loop.exits, {},
        gflops)


if __name__ == '__main__':
    main()
