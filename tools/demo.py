# Copyright (c) The proscale Authors. All rights reserved.
"""End-to-end demo: PRO-SCALE and ECO-M2F on the embedded synthetic dataset.

Generates the data, trains the tiny Mask2Former baseline, PRO-SCALE and the
ECO-M2F parent with one recipe, runs ECO-M2F steps B and C, evaluates every
model on the val split and reports PQ, GFLOPs and CPU latency side by side
(``<work-dir>/summary.json``, a PQ-vs-GFLOPs plot and per-image
visualisations). Finished stages are reused on a rerun.

Examples:
    python tools/demo.py                 # or: make demo
    python tools/demo.py --fresh         # or: make demo DEMO_FRESH=1
    python tools/demo.py --small --work-dir work_dirs/demo_small
"""
import argparse
import sys
from typing import List, Optional

# Imported before torch: OpenMP threads wait passively (proscale.openmp_env).
from proscale.demo import PRESETS, DemoPipeline, StageError


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Run the end-to-end demo of PRO-SCALE and ECO-M2F on the '
        'synthetic panoptic dataset')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='output folder (default: work_dirs/demo)')
    parser.add_argument(
        '--fresh',
        action='store_true',
        help='discard earlier results instead of reusing finished stages')
    parser.add_argument(
        '--small',
        action='store_true',
        help='a few images and iterations (checks the pipeline in about a '
        'minute; the numbers mean nothing)')
    parser.add_argument(
        '--threads',
        type=int,
        help='torch CPU threads (default: torch\'s, i.e. all cores)')
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be >= 1, got {args.threads}')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    settings = PRESETS['small' if args.small else 'full']
    if args.threads is not None:
        settings = settings.with_overrides(threads=args.threads)
    try:
        pipeline = DemoPipeline(args.work_dir, settings, fresh=args.fresh)
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)
    try:
        return pipeline.run()
    except StageError as error:
        print(f'{pipeline.stages.log_tail()}\nerror: {error}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
