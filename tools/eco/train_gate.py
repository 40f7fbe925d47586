# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F step C: train the exit gate on a derived exit dataset.

Trains on the cached gate inputs of ``tools/eco/derive_exit_dataset.py`` (no
model run), keeps a seeded held-out split, prints the gate's accuracy, exit
histogram, expected encoder depth and (with per-exit GFLOPs) expected GFLOPs,
the gate's own cost included, and writes GATE.pth for
``tools/eco/merge_gate.py``. With a budget instead of ``--beta``, beta is
searched so that the gate meets the budget on the held-out images; several
``--iters`` are chosen from on the held-out images too. Once beta and the
iterations are chosen, the saved gate is refit on all images with them
(``--no-refit`` keeps the gate of the training share).

Examples:
    python tools/eco/train_gate.py derived.npz --beta 0.003 --out gate.pth
    python tools/eco/train_gate.py derived.npz --target-depth 4.0 \
        --iters 100 300 1000 --out gate.pth
    python tools/eco/train_gate.py derived.npz --target-gflops 20 \
        --config CONFIG --shape 128 128 --out gate.pth
"""
import argparse
import os.path as osp
from typing import List, Optional

from proscale.analysis import (
    build_analysis_model, fixed_shape_batch, load_analysis_config)
from proscale.eco.beta_search import fit_gate
from proscale.analysis.exit_flops import (
    count_exit_gflops, count_gate_gflops)
from proscale.eco.exit_samples import (
    load_exit_samples)
from proscale.eco.gate_training import (
    add_gate_training_arguments, format_gate_metrics, gate_meta,
    gate_training_kwargs)
from proscale.models.gates import ExitGate, save_gate
from proscale.utils.cli import (
    UserInputError, dump_json, positive_int, report_user_errors)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train the ECO-M2F exit gate on a derived exit dataset')
    parser.add_argument('derived', help='derived exit dataset (.npz)')
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        '--beta', type=float, help='trade-off: utility q_k - beta * k')
    target.add_argument(
        '--target-depth',
        type=float,
        help='search beta for this held-out mean number of encoder layers')
    target.add_argument(
        '--target-gflops',
        type=float,
        help='search beta for this held-out mean GFLOPs (needs per-exit '
        'GFLOPs: --exit-gflops or --config and --shape)')
    parser.add_argument('--out', required=True, help='output gate file')
    parser.add_argument(
        '--metric',
        help="per-image quality q_k, one of the derived file's metrics: pq, "
        'sq, rq (panoptic) or ap, ap50, ap75 (box); default: the first (pq, '
        'ap)')
    parser.add_argument(
        '--group',
        help="one of the derived file's groups: All, Things, Stuff "
        '(panoptic) or All (box); default: All')
    flops = parser.add_mutually_exclusive_group()
    flops.add_argument(
        '--exit-gflops',
        type=float,
        nargs='+',
        help='model GFLOPs at every exit, in exit order')
    flops.add_argument(
        '--config',
        help='parent config: count the GFLOPs of every exit at --shape')
    parser.add_argument(
        '--shape',
        type=positive_int,
        nargs=2,
        metavar=('H', 'W'),
        help='input size for counting GFLOPs with --config')
    parser.add_argument(
        '--val-fraction', type=float, default=0.2, help='held-out share')
    add_gate_training_arguments(parser, iters_choices=True)
    parser.add_argument(
        '--search-steps',
        type=int,
        default=8,
        help='bisection steps of the beta search')
    parser.add_argument(
        '--gate-input-levels',
        type=int,
        default=1,
        help='encoder scales pooled into the gate input, coarse to fine '
        "(1: the coarsest scale, 1/32 or DINO's 1/64, the authors' gate; up "
        "to the derived file's "
        'gate_input_levels)')
    parser.add_argument(
        '--gate-input-depth',
        type=int,
        choices=(0, 1),
        default=0,
        help="encoder layers run before the gate's input is pooled (0: the "
        "projected tokens, the authors' gate; 1: the tokens after the first "
        'encoder layer, which the chosen exit then reuses)')
    parser.add_argument(
        '--no-refit',
        action='store_true',
        help='save the gate trained on the training share instead of one '
        'refit on all images with the chosen beta and iterations')
    parser.add_argument('--json', help='also write the figures to this file')
    args = parser.parse_args(argv)
    if args.config is not None and args.shape is None:
        parser.error('--config needs --shape H W')
    if args.target_gflops is not None and args.exit_gflops is None and (
            args.config is None):
        parser.error('--target-gflops needs per-exit GFLOPs: pass '
                     '--exit-gflops or --config with --shape')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    with report_user_errors():
        try:
            samples = load_exit_samples(
                args.derived,
                args.metric,
                args.group,
                input_levels=args.gate_input_levels,
                input_depth=args.gate_input_depth)
        except ValueError as error:
            raise UserInputError(str(error)) from error
        exit_gflops = args.exit_gflops
        if args.config is not None:
            model = build_analysis_model(load_analysis_config(args.config))
            exit_gflops = list(
                count_exit_gflops(model,
                                  [fixed_shape_batch(model, args.shape)],
                                  samples.exits, 1).values())
        gate_gflops = count_gate_gflops(
            ExitGate(
                exits=samples.exits,
                in_channels=samples.gate_inputs.shape[1],
                hidden_channels=args.hidden_channels,
                input_levels=args.gate_input_levels,
                input_depth=args.gate_input_depth))
        budget = (
            args.target_depth
            if args.target_depth is not None else args.target_gflops)
        fit = fit_gate(
            samples,
            beta=args.beta,
            budget=budget,
            budget_unit='depth' if args.target_depth is not None else 'gflops',
            exit_gflops=exit_gflops,
            gate_gflops=gate_gflops,
            val_fraction=args.val_fraction,
            split_seed=args.seed,
            search_steps=args.search_steps,
            refit=not args.no_refit,
            input_levels=args.gate_input_levels,
            input_depth=args.gate_input_depth,
            **gate_training_kwargs(args))

    lines = [
        f'exits {samples.exits}, beta {fit.beta:.6g}, iters {fit.iters}, '
        f'loss {args.loss}'
    ]
    if fit.trials:
        if budget is None:
            lines.append('iterations chosen on the held-out share (mean '
                         'cost / quality / utility):')
        else:
            unit = 'layers' if args.target_depth is not None else 'GFLOPs'
            lines.append(f'beta search for a budget of {budget:g} {unit} '
                         '(held-out cost / mean quality / utility):')
        lines += [
            f'  beta {t.beta:<10.4g} iters {t.iters:<6d} cost {t.cost:8.3f}  '
            f'quality {t.quality:.4f}  utility {t.utility:.4f}'
            for t in fit.trials
        ]
    if exit_gflops is not None:
        lines.append('GFLOPs per exit: ' +
                     ', '.join(f'{k}: {g:.3f}'
                               for k, g in zip(samples.exits, exit_gflops)) +
                     f' (+ {gate_gflops:.2e} for the gate)')
    lines.append(
        format_gate_metrics(
            fit.val_metrics, 'held-out split, gate trained on the rest'))
    lines.append(
        format_gate_metrics(
            fit.train_metrics, 'saved gate, on its training images (' +
            ('all, refit' if not args.no_refit else 'training share') + ')'))
    print('\n'.join(lines))

    figures = dict(
        beta=fit.beta,
        iters=fit.iters,
        exit_gflops=exit_gflops,
        gate_gflops=gate_gflops,
        refit=not args.no_refit,
        train=fit.train_metrics,
        val=fit.val_metrics,
        trials=[
            dict(
                beta=t.beta,
                iters=t.iters,
                cost=t.cost,
                quality=t.quality,
                utility=t.utility) for t in fit.trials
        ])
    derived_meta = samples.meta
    meta = gate_meta(
        fit.gate,
        fit.beta,
        args.loss,
        temperature=args.temperature,
        metric=samples.metric,
        group=samples.group,
        derived=dict(
            path=osp.abspath(args.derived),
            checkpoint=derived_meta.get('checkpoint'),
            dataset=derived_meta.get('dataset')),
        train_args={
            key: value
            for key, value in vars(args).items()
            if key not in ('derived', 'out', 'json')
        },
        figures=figures)
    save_gate(fit.gate, meta, args.out)
    print(f'gate saved to {args.out}')
    dump_json(figures, args.json)
    return figures


if __name__ == '__main__':
    main()
