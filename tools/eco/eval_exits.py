"""Evaluate every encoder exit of an ECO-M2F parent in one pass.

Each test image goes through the backbone and the encoder once and is decoded
at every exit (``MultiExitTestLoop``); each exit has its own copy of the
config's test evaluator. Prints PQ/SQ/RQ (and AP / mIoU where the config
evaluates them) per exit, with the GFLOPs of each exit (papers' convention,
averaged over ``--flops-images`` test images).

Example:
    python tools/eco/eval_exits.py \
        configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py \
        work_dirs/eco/iter_300.pth --json work_dirs/eco/exits.json
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from torch import nn  # noqa: E402

from projects.proscale.analysis import average_flops  # noqa: E402
from projects.proscale.engine.loops import split_exit_metrics  # noqa: E402
from projects.proscale.utils.cli import (
    check_dataset_paths,  # noqa: E402
    load_config,
    report_user_errors)

# Metric columns, matched against the last part of the evaluators' keys
# (e.g. 'coco_panoptic/PQ'), in this order when present.
COLUMNS = ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st', 'bbox_mAP', 'segm_mAP', 'AP',
           'mIoU')
DEFAULT_FLOPS_IMAGES = 10


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
    parser.add_argument(
        '--flops-images',
        type=int,
        default=DEFAULT_FLOPS_IMAGES,
        help='average the GFLOPs of each exit over this many test images '
        f'(default: {DEFAULT_FLOPS_IMAGES}; 0 skips the count)')
    parser.add_argument('--json', help='write the per-exit results here')
    parser.add_argument(
        '--work-dir', help='directory for the logs of the evaluation')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value; keys must exist')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.flops_images < 0:
        parser.error('--flops-images must be >= 0')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def exit_flops(model: nn.Module, dataloader, exits: List[int],
               num_images: int) -> Dict[int, Dict[str, float]]:
    """Average GFLOPs of the model at every exit.

    Args:
        model (nn.Module): The ``EcoMask2Former``.
        dataloader: The test dataloader.
        exits (list[int]): The exits.
        num_images (int): Number of test images to average over.

    Returns:
        dict[int, dict[str, float]]: Exit -> ``average_flops`` result.
    """
    flops = {}
    try:
        for k in exits:
            model.set_exit(k)
            flops[k] = average_flops(model, dataloader, num_images)
    finally:
        model.set_exit(None)
    return flops


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
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(
                f'checkpoint {args.checkpoint} does not exist')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', 'eval_exits',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.test_cfg = dict(type='MultiExitTestLoop', exits=args.exits)

    with report_user_errors(cfg):
        check_dataset_paths(cfg, ('test_dataloader', ))
        if 'runner_type' not in cfg:
            runner = Runner.from_cfg(cfg)
        else:
            runner = RUNNERS.build(cfg)
        per_exit = split_exit_metrics(runner.test())
    if not is_main_process():
        return per_exit

    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    flops = exit_flops(model, runner.test_loop.dataloader, list(per_exit),
                       args.flops_images) if args.flops_images else {}
    print(format_table(per_exit, flops))
    if args.json:
        results = {
            str(k): dict(metrics, gflops=flops[k]) if flops else metrics
            for k, metrics in per_exit.items()
        }
        with open(args.json, 'w') as f:
            json.dump(
                dict(
                    config=args.config,
                    checkpoint=args.checkpoint,
                    exits=results),
                f,
                indent=2)
    return per_exit


if __name__ == '__main__':
    main()
