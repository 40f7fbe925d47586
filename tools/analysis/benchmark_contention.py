# Copyright (c) The proscale Authors. All rights reserved.
"""Tiny-training speed alone, beside a CPU-bound process and as one of two
jobs, under the old and the new CPU thread defaults, in one run.

Each measurement trains the tiny synthetic config for a few iterations in a
fresh process (as ``tools/train.py`` does) and reports the median seconds
per iteration; "speed vs. alone" is the policy's solo s/iter over that
scenario's (0.5: a fair half of a machine shared by two jobs).

Example:
    python tools/analysis/benchmark_contention.py --json contention.json
"""
import argparse
import os
from typing import List, Optional

from proscale.analysis.contention import (POLICIES, ContentionBenchmark,
                                          default_work_dir, format_table,
                                          make_benchmark_dataset)
from proscale.utils.cli import dump_json, positive_int, report_user_errors

TINY_CONFIG = ('configs/proscale/'
               'mask2former_r18_proscale-333_1xb4-tiny_synthetic-panoptic.py')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Training speed under CPU contention, old vs. new '
        'thread defaults')
    parser.add_argument(
        '--config',
        default=TINY_CONFIG,
        help='a config on the synthetic panoptic dataset (default: the tiny '
        'PRO-SCALE)')
    parser.add_argument(
        '--iters',
        type=positive_int,
        default=6,
        help='timed iterations per measurement (default: 6)')
    parser.add_argument(
        '--warmup',
        type=positive_int,
        default=2,
        help='untimed iterations before them (default: 2)')
    parser.add_argument(
        '--work-dir',
        help='folder for the dataset and the runs (default: a new '
        'temporary folder)')
    parser.add_argument('--json', help='also write the rows to this file')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with report_user_errors():
        if not os.path.isfile(args.config):
            raise FileNotFoundError(f'--config: {args.config} does not exist')
        work_dir = args.work_dir or default_work_dir()
        data_root = make_benchmark_dataset(os.path.join(work_dir, 'data'))
    print(f'{len(os.sched_getaffinity(0))} cores available, load average '
          f'{os.getloadavg()[0]:.2f}; runs under {work_dir}')
    benchmark = ContentionBenchmark(args.config, data_root, POLICIES,
                                    args.iters, args.warmup, work_dir)
    rows = benchmark.run()
    print(format_table(rows))
    dump_json(rows, args.json)


if __name__ == '__main__':
    main()
