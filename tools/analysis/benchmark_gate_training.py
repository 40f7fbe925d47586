# Copyright (c) The proscale Authors. All rights reserved.
"""Gate training speed on cached features, this checkout against others.

Trains the same gates with this checkout's ``train_gate`` and with that of
every ``--compare-with`` tree (e.g. an older revision: ``git worktree add
../before REV``), each in a fresh process, interleaved round by round, and
prints seconds per gate, milliseconds per optimiser step and the ratio to
this checkout.

Example:
    python tools/analysis/benchmark_gate_training.py \
        work_dirs/demo/eco/derived_train.npz --compare-with ../before
"""
import argparse
import os.path as osp
from typing import List, Optional

import proscale
from proscale.analysis.gate_training_speed import (
    compare_gate_training_speed, format_gate_training_speed)
from proscale.utils.cli import dump_json, positive_int, report_user_errors

# The folder this proscale is imported from (a checkout's projects/).
PROJECTS_DIR = osp.dirname(osp.dirname(osp.abspath(proscale.__file__)))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Gate training speed of this checkout and others')
    parser.add_argument('derived', help='derived exit dataset (.npz)')
    parser.add_argument(
        '--compare-with',
        nargs='+',
        default=[],
        metavar='CHECKOUT',
        help='other proscale checkouts to time beside this one')
    parser.add_argument('--beta', type=float, default=0.003)
    parser.add_argument(
        '--gates', type=positive_int, default=6, help='gates per round')
    parser.add_argument(
        '--iters', type=positive_int, default=500, help='steps per gate')
    parser.add_argument('--rounds', type=positive_int, default=3)
    parser.add_argument('--threads', type=positive_int, default=1)
    parser.add_argument('--json', help='also write the rows to this file')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with report_user_errors():
        if not osp.isfile(args.derived):
            raise FileNotFoundError(f'{args.derived} does not exist')
        trees = [PROJECTS_DIR]
        for checkout in args.compare_with:
            projects = osp.join(osp.abspath(checkout), 'projects')
            if not osp.isdir(osp.join(projects, 'proscale')):
                raise FileNotFoundError(
                    f'--compare-with: {checkout} holds no projects/proscale')
            trees.append(projects)
    rows = compare_gate_training_speed(trees, osp.abspath(args.derived),
                                       args.beta, args.gates, args.iters,
                                       args.rounds, args.threads)
    print(format_gate_training_speed(rows))
    dump_json(rows, args.json)


if __name__ == '__main__':
    main()
