"""Sweep the ECO-M2F trade-off beta: PQ vs. expected GFLOPs on the test set.

For every beta a gate is trained on the derived exit dataset of the training
split (all its images). One pass over the test set (``ExitPolicyTestLoop``)
then evaluates every gate and every fixed exit exactly: each policy's
evaluator gets every image's prediction at the exit that policy picks, so
PQ is the dataset-level metric, as for a real gated run. Expected GFLOPs
are ``sum_k share_k * G_k`` (+ the gate's own cost), with ``G_k`` averaged
over ``--flops-images`` test images. Writes ``sweep.json``, ``sweep.png``
and the gates (``gates/beta_*.pth``, ready for ``merge_gate.py``) to
``--out-dir``.

Example:
    python tools/eco/sweep_beta.py \
        configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py \
        work_dirs/eco/iter_300.pth work_dirs/eco/derived_train.npz \
        --betas 0 0.005 0.02 0.1 --out-dir work_dirs/eco/sweep
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from projects.proscale.engine.exit_flops import (  # noqa: E402
    count_exit_gflops, count_gate_gflops)
from projects.proscale.engine.exit_samples import (  # noqa: E402
    load_exit_samples)
from projects.proscale.engine.gate_sweep import (  # noqa: E402
    format_sweep, plot_sweep, sweep_rows)
from projects.proscale.engine.gate_training import (  # noqa: E402
    GATE_LOSSES, evaluate_gate, gate_meta, train_gate)
from projects.proscale.engine.loops import split_policy_metrics  # noqa: E402
from projects.proscale.models.gates import save_gate  # noqa: E402
from projects.proscale.utils.cli import (  # noqa: E402
    check_dataset_paths, load_config, report_user_errors)


DEFAULT_FLOPS_IMAGES = 10


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train ECO-M2F gates for several betas and plot test PQ '
        'against expected GFLOPs, with every fixed exit')
    parser.add_argument('config', help='config of the early-exit parent')
    parser.add_argument('checkpoint', help='checkpoint of the parent')
    parser.add_argument(
        'derived', help='derived exit dataset of the training split (.npz)')
    parser.add_argument(
        '--betas', type=float, nargs='+', required=True, help='betas')
    parser.add_argument(
        '--out-dir', required=True, help='folder for the results')
    parser.add_argument(
        '--loss', choices=sorted(GATE_LOSSES), default='hard_ce')
    parser.add_argument('--temperature', type=float, default=0.05)
    parser.add_argument('--hidden-channels', type=int)
    parser.add_argument('--iters', type=int, default=500)
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--lr', type=float, default=5e-2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--flops-images',
        type=int,
        default=DEFAULT_FLOPS_IMAGES,
        help='average the GFLOPs of each exit over this many test images '
        f'(default: {DEFAULT_FLOPS_IMAGES}; 0 plots against mean depth)')
    parser.add_argument('--work-dir', help='folder for the logs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value; keys must exist')
    args = parser.parse_args(argv)
    if args.flops_images < 0:
        parser.error('--flops-images must be >= 0')
    if any(beta < 0 for beta in args.betas):
        parser.error('--betas must be >= 0')
    return args


def _panoptic_evaluator(cfg) -> list:
    """The panoptic entries of the test evaluator (the sweep reports PQ)."""
    evaluator = cfg.test_evaluator
    entries = evaluator if isinstance(evaluator, list) else [evaluator]
    panoptic = [e for e in entries if 'Panoptic' in e.get('type', '')]
    if not panoptic:
        raise ValueError('test_evaluator has no panoptic metric (types: '
                         f"{[e.get('type') for e in entries]})")
    return panoptic


def main(argv: Optional[List[str]] = None) -> List[dict]:
    args = parse_args(argv)
    with report_user_errors():
        cfg = load_config(args.config, args.cfg_options)
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(
                f'checkpoint {args.checkpoint} does not exist')
        samples = load_exit_samples(args.derived)
        evaluator = _panoptic_evaluator(cfg)

    gate_dir = osp.join(args.out_dir, 'gates')
    os.makedirs(gate_dir, exist_ok=True)
    gate_files, betas, train_accuracy = {}, {}, {}
    for beta in args.betas:
        name = f'beta{beta:g}'
        gate = train_gate(
            samples,
            beta,
            loss=args.loss,
            temperature=args.temperature,
            hidden_channels=args.hidden_channels,
            iters=args.iters,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed)
        train_accuracy[name] = evaluate_gate(gate, samples, beta)['accuracy']
        gate_files[name] = osp.join(gate_dir, f'{name}.pth')
        betas[name] = beta
        save_gate(
            gate,
            gate_meta(
                gate,
                beta,
                args.loss,
                temperature=args.temperature,
                derived=osp.abspath(args.derived)), gate_files[name])

    # the parent runs without its gate; every policy is evaluated in the loop
    cfg.model.pop('gate', None)
    cfg.model.test_cfg.exit_layer = None
    cfg.test_evaluator = evaluator
    cfg.test_cfg = dict(type='ExitPolicyTestLoop', gates=gate_files)
    cfg.load_from = args.checkpoint
    cfg.work_dir = args.work_dir or osp.join(args.out_dir, 'work_dir')
    with report_user_errors(cfg):
        check_dataset_paths(cfg, ('test_dataloader', ))
        runner = Runner.from_cfg(cfg)
        per_policy = split_policy_metrics(runner.test())
    loop = runner.test_loop
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    exit_gflops, gate_gflops = None, 0.0
    if args.flops_images:
        exit_gflops = count_exit_gflops(model, loop.dataloader, loop.exits,
                                        args.flops_images)
        gate_gflops = count_gate_gflops(model, next(iter(loop.gates.values())),
                                        loop.dataloader, args.flops_images)
    rows = sweep_rows(per_policy, loop.exit_counts, loop.exits, betas,
                      exit_gflops, gate_gflops)
    for row in rows:
        if row['kind'] == 'gate':
            row['train_accuracy'] = train_accuracy[row['policy']]
            row['gate_file'] = gate_files[row['policy']]
    print(format_sweep(rows))
    with open(osp.join(args.out_dir, 'sweep.json'), 'w') as f:
        json.dump(
            dict(
                config=args.config,
                checkpoint=args.checkpoint,
                derived=args.derived,
                loss=args.loss,
                exit_gflops=exit_gflops,
                gate_gflops=gate_gflops if exit_gflops else None,
                rows=rows),
            f,
            indent=2)
    plot_sweep(rows, osp.join(args.out_dir, 'sweep.png'),
               osp.basename(args.config))
    print(f'results written to {args.out_dir}/sweep.json and sweep.png')
    return rows


if __name__ == '__main__':
    main()
