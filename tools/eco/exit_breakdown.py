# Copyright (c) The proscale Authors. All rights reserved.
"""Per-exit quality and gate choices, broken down by groups of images.

Reads a derived exit dataset (``tools/eco/derive_exit_dataset.py``, e.g.
of the validation split) and groups its images by a field of the
annotation file's ``images`` entries (``--by``; the synthetic dataset's
``context`` with ``--context-fraction``). Prints, per group, the mean
per-image quality at every exit and, for the per-image oracle and every
``--gates`` file, the share of images sent to each exit, the mean depth and
the mean per-image quality at the chosen exits (see
``proscale.eco.exit_breakdown``).

Example:
    python tools/eco/exit_breakdown.py work_dirs/eco/derived_val.npz \
        --by context --gates work_dirs/sweep/gates/beta0.pth \
        --json work_dirs/eco/breakdown.json
"""
import argparse
import os.path as osp
from typing import List, Optional

from proscale.eco.exit_breakdown import (exit_breakdown,
                                         format_exit_breakdown, gate_choices,
                                         image_labels)
from proscale.eco.exit_samples import load_exit_samples
from proscale.evaluation.exit_dataset import GROUPS, METRICS
from proscale.models.gates import load_gate
from proscale.utils.cli import UserInputError, dump_json, report_user_errors


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Break per-exit quality and gate choices of a derived '
        'exit dataset down by groups of images')
    parser.add_argument('derived', help='derived exit dataset (.npz)')
    parser.add_argument(
        '--by',
        required=True,
        help="field of the annotation file's images entries to group by "
        '(e.g. context)')
    parser.add_argument(
        '--ann-file',
        help="annotation file to read it from (default: the derived "
        "dataset's own, meta.dataset.ann_file)")
    parser.add_argument(
        '--gates', nargs='+', default=[], help='gate files to break down')
    parser.add_argument('--metric', choices=METRICS, default='pq')
    parser.add_argument(
        '--group',
        choices=GROUPS,
        default='All',
        help='category group of the quality')
    parser.add_argument('--json', help='also write the results to this file')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    with report_user_errors():
        try:
            samples = load_exit_samples(args.derived, args.metric,
                                        args.group)
            ann_file = args.ann_file or samples.meta.get('dataset', {}).get(
                'ann_file')
            if not ann_file:
                raise ValueError(f'{args.derived}: no meta.dataset.ann_file; '
                                 'pass --ann-file')
            labels = image_labels(ann_file, args.by, samples.image_ids)
            choices = {}
            for path in args.gates:
                gate, _ = load_gate(path)
                gate_samples = load_exit_samples(
                    args.derived,
                    args.metric,
                    args.group,
                    input_levels=gate.input_levels,
                    input_depth=gate.input_depth)
                name = osp.splitext(osp.basename(path))[0]
                try:
                    choices[name] = gate_choices(gate, gate_samples)
                except ValueError as error:
                    raise ValueError(f'{path}: {error}') from error
        except (FileNotFoundError, ValueError) as error:
            raise UserInputError(str(error)) from error
    breakdown = exit_breakdown(samples, labels, choices)
    breakdown.update(
        derived=args.derived,
        ann_file=ann_file,
        by=args.by,
        metric=args.metric,
        group=args.group,
        gates=args.gates)
    print(format_exit_breakdown(breakdown,
                                f'{args.metric.upper()} {args.group}'))
    dump_json(breakdown, args.json)
    return breakdown


if __name__ == '__main__':
    main()
