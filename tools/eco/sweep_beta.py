# Copyright (c) The proscale Authors. All rights reserved.
"""Sweep the ECO-M2F trade-off beta: PQ vs. expected GFLOPs on the test set.

For every beta a gate is trained on the derived exit dataset of the training
split (all its images). One pass over the test set (``ExitPolicyTestLoop``)
then evaluates every gate, every fixed exit and the per-image oracle (each
image at the exit of its best own PQ; ``--no-oracle`` skips it) exactly:
each policy's
evaluator gets every image's prediction at the exit that policy picks, so
PQ is the dataset-level metric, as for a real gated run. GFLOPs are
averaged per image over the first ``--flops-images`` test images, each at
its own size and at the exit the policy picked for it (+ the gate's own
cost for gates). Every gate and the oracle are compared with the fixed-exit
curve interpolated at their GFLOPs (``vs fixed``; ``oracle_gain_captured``
in the JSON: a gate's gain over the curve as a share of the oracle's).
Writes ``sweep.json``, ``sweep.png``
and the gates (``gates/beta<beta>.pth``, e.g. ``beta0.003.pth``, ready for
``merge_gate.py``; ``in3-`` for a 3-scale input, ``l1-`` for the tokens
after the first encoder layer) to ``--out-dir``.

Example:
    python tools/eco/sweep_beta.py \
        configs/eco_m2f/eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py \
        work_dirs/eco/iter_300.pth work_dirs/eco/derived_train.npz \
        --betas 0 0.005 0.02 0.1 --out-dir work_dirs/eco/sweep
"""
import argparse
import os
import os.path as osp
from itertools import product
from typing import List, Optional

from proscale.analysis.exit_flops import ImageGFlops, count_gate_gflops
from proscale.eco.exit_samples import (
    load_exit_samples)
from proscale.eco.provenance import (ParentMismatchError,
                                     check_parent_checkpoint)
from proscale.eco.gate_sweep import (
    format_sweep, plot_sweep, sweep_rows)
from proscale.eco.gate_training import (
    add_gate_training_arguments, evaluate_gate, gate_meta,
    gate_training_kwargs, train_gate)
from proscale.engine.loops import split_policy_metrics
from proscale.models.gates import save_gate
from proscale.utils.cli import (
    UserInputError, add_cfg_options_argument, add_flops_images_argument,
    build_runner, check_checkpoint, check_dataset_paths, dump_json,
    load_config, report_user_errors)


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
    add_gate_training_arguments(parser)
    add_flops_images_argument(parser, zero_means='plots against mean depth')
    parser.add_argument(
        '--gate-input-levels',
        type=int,
        nargs='+',
        default=[1],
        help='gate inputs to compare: encoder scales pooled, coarse to fine '
        "(1: the 1/32 scale, the authors' gate; 3: every scale); one gate "
        'per value and beta')
    parser.add_argument(
        '--gate-input-depths',
        type=int,
        nargs='+',
        choices=(0, 1),
        default=[0],
        help='gate inputs to compare: encoder layers run before pooling '
        "(0: the projected tokens, the authors' gate; 1: the tokens after "
        'the first encoder layer); one gate per value, input scales and '
        'beta')
    parser.add_argument(
        '--no-oracle',
        action='store_true',
        help='skip the per-image oracle (it needs the ground-truth panoptic '
        'PNGs of the test set)')
    parser.add_argument('--work-dir', help='folder for the logs')
    parser.add_argument(
        '--force',
        action='store_true',
        help='use a derived dataset computed from another parent checkpoint '
        '(a warning instead of an error)')
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    if any(beta < 0 for beta in args.betas):
        parser.error('--betas must be >= 0')
    if any(levels < 1 for levels in args.gate_input_levels):
        parser.error('--gate-input-levels must be >= 1')
    return args


def _panoptic_evaluator(cfg) -> list:
    """The panoptic entries of the test evaluator (the sweep reports PQ),
    or for a detector its box entries (box AP)."""
    evaluator = cfg.test_evaluator
    entries = evaluator if isinstance(evaluator, list) else [evaluator]
    panoptic = [e for e in entries if 'Panoptic' in e.get('type', '')] or [
        e for e in entries if e.get('type') == 'CocoMetric'
        and 'bbox' in e.get('metric', 'bbox')
    ]
    if not panoptic:
        raise ValueError('test_evaluator has no panoptic or box metric '
                         f"(types: {[e.get('type') for e in entries]})")
    return panoptic


def main(argv: Optional[List[str]] = None) -> List[dict]:
    args = parse_args(argv)
    with report_user_errors():
        cfg = load_config(args.config, args.cfg_options)
        check_checkpoint(args.checkpoint)
        inputs = product(args.gate_input_levels, args.gate_input_depths)
        try:
            samples = {(levels, depth): load_exit_samples(
                args.derived, input_levels=levels, input_depth=depth)
                       for levels, depth in inputs}
        except ValueError as error:
            raise UserInputError(str(error)) from error
        derived_meta = next(iter(samples.values())).meta
        try:
            check_parent_checkpoint(derived_meta.get('checkpoint'),
                                    args.checkpoint,
                                    f'derived dataset {args.derived}',
                                    args.force)
        except ParentMismatchError as error:
            raise UserInputError(str(error)) from error
        evaluator = _panoptic_evaluator(cfg)

    gate_dir = osp.join(args.out_dir, 'gates')
    os.makedirs(gate_dir, exist_ok=True)
    gate_files, betas, levels, depths, train_accuracy = {}, {}, {}, {}, {}
    for ((input_levels, input_depth), level_samples), beta in product(
            samples.items(), args.betas):
        name = ('' if input_levels == 1 else f'in{input_levels}-') + (
            f'l{input_depth}-' if input_depth else '') + f'beta{beta:g}'
        gate = train_gate(
            level_samples,
            beta,
            input_levels=input_levels,
            input_depth=input_depth,
            **gate_training_kwargs(args))
        train_accuracy[name] = evaluate_gate(gate, level_samples,
                                             beta)['accuracy']
        gate_files[name] = osp.join(gate_dir, f'{name}.pth')
        betas[name] = beta
        levels[name] = input_levels
        depths[name] = input_depth
        save_gate(
            gate,
            gate_meta(
                gate,
                beta,
                args.loss,
                temperature=args.temperature,
                derived=dict(
                    path=osp.abspath(args.derived),
                    checkpoint=level_samples.meta.get('checkpoint'),
                    dataset=level_samples.meta.get('dataset'))),
            gate_files[name])

    # the parent runs without its gate; every policy is evaluated in the loop
    cfg.model.pop('gate', None)
    cfg.model.test_cfg.exit_layer = None
    cfg.test_evaluator = evaluator
    cfg.test_cfg = dict(
        type='ExitPolicyTestLoop',
        gates=gate_files,
        oracle=not args.no_oracle)
    cfg.load_from = args.checkpoint
    cfg.work_dir = args.work_dir or osp.join(args.out_dir, 'work_dir')
    with report_user_errors(cfg):
        check_dataset_paths(cfg, ('test_dataloader', ))
        runner = build_runner(cfg)
        per_policy = split_policy_metrics(runner.test())
    loop = runner.test_loop
    gflops, exit_gflops, gate_gflops = None, None, None
    if args.flops_images:
        image_gflops = ImageGFlops(loop.model)
        gate_gflops = {
            name: count_gate_gflops(gate)
            for name, gate in loop.gates.items()
        }
        gflops = {
            name: image_gflops.mean(images[:args.flops_images],
                                    gate_gflops.get(name, 0.0))
            for name, images in loop.image_exits.items()
        }
        sizes = [size for size, _ in
                 next(iter(loop.image_exits.values()))[:args.flops_images]]
        exit_gflops = image_gflops.per_exit(sizes, loop.exits)
    rows = sweep_rows(per_policy, loop.exit_counts, loop.exits, betas,
                      gflops, levels, depths)
    for row in rows:
        if row['kind'] == 'gate':
            row['train_accuracy'] = train_accuracy[row['policy']]
            row['gate_file'] = gate_files[row['policy']]
    print(format_sweep(rows))
    dump_json(
        dict(
            config=args.config,
            checkpoint=args.checkpoint,
            derived=args.derived,
            loss=args.loss,
            exit_gflops=exit_gflops,
            gate_gflops=gate_gflops,
            rows=rows), osp.join(args.out_dir, 'sweep.json'))
    plot_sweep(rows, osp.join(args.out_dir, 'sweep.png'),
               osp.basename(args.config))
    print(f'results written to {args.out_dir}/sweep.json and sweep.png')
    return rows


if __name__ == '__main__':
    main()
