"""ECO-M2F step B: derive the per-image, per-exit quality dataset of a split.

Runs ``DeriveExitDatasetLoop`` (projects/proscale/engine/loops/
derive_exit_dataset_loop.py); the output format is described in
docs/eco_derived_dataset.md.

Examples:
    python tools/eco/derive_exit_dataset.py CONFIG CKPT --out derived.npz
    python tools/eco/derive_exit_dataset.py CONFIG CKPT --out derived.npz \
        --resume
    torchrun --nproc_per_node 8 tools/eco/derive_exit_dataset.py CONFIG CKPT \
        --out derived.npz --launcher pytorch

Without CUDA, ``--launcher pytorch`` runs the ranks on CPU with gloo.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import LOOPS, RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from projects.proscale.engine.loops import (  # noqa: E402
    derive_exit_dataset_loop as derivation)
from projects.proscale.utils.cli import (  # noqa: E402
    check_dataset_paths, load_config, report_user_errors)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Derive the ECO-M2F exit dataset: per-image PQ/SQ/RQ at '
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
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings (xxx=yyy); keys must exist')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def init_cpu_distributed(cfg: Config) -> None:
    """Start a gloo process group for ``--launcher pytorch`` without CUDA.

    mmengine's pytorch launcher selects a CUDA device and DDP is given one,
    which fails on CPU-only machines. Derivation computes no gradients, so
    ranks only need a process group to agree on their images.
    """
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    torch.distributed.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def main() -> None:
    args = parse_args()
    with report_user_errors():
        cfg = load_config(args.config, args.cfg_options)
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(
                f'checkpoint {args.checkpoint} does not exist')
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
        init_cpu_distributed(cfg)
        dataloader = derivation.derive_dataloader_cfg(cfg, args.split)
        runner = (
            Runner.from_cfg(cfg)
            if 'runner_type' not in cfg else RUNNERS.build(cfg))
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
