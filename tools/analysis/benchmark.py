# Copyright (c) The proscale Authors. All rights reserved.
"""Benchmark the latency and peak memory of models side by side.

The configs are built with random weights (latency does not depend on them)
and timed interleaved in one process after warm-up rounds; every config is
compared with the first one.

Examples:
    python tools/analysis/benchmark.py BASELINE.py PROSCALE.py \
        --shape 800 1088 --part encoder --threads 2 --runs 5
    # each config on the fused CPU kernels and on the plain PyTorch path
    python tools/analysis/benchmark.py BASELINE.py PROSCALE.py \
        --shape 800 1088 --part encoder --threads 2 --runs 5 --compare-fused
"""
import argparse
from typing import List, Optional

import torch

from proscale.analysis import (benchmark, build_analysis_model,
                               format_benchmark, load_analysis_config,
                               make_workload)
from proscale.analysis.latency import (BENCHMARK_PARTS, CPU_PATHS,
                                       fused_speedups, with_cpu_path)
from proscale.ops import is_available
from proscale.utils.cli import (add_cfg_options_argument, dump_json,
                                positive_int, report_user_errors)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Latency and peak memory of Mask2Former-style and '
        'DETR-family models, '
        'measured interleaved; ratios are to the first config')
    parser.add_argument(
        'configs', nargs='+', help='config files (or pkg::paths)')
    parser.add_argument(
        '--shape',
        type=positive_int,
        nargs=2,
        required=True,
        metavar=('H', 'W'),
        help='input height and width')
    parser.add_argument(
        '--part',
        choices=BENCHMARK_PARTS,
        default='model',
        help='time the whole network (model) or only the encoder (the pixel '
        'decoder on backbone features, or a DETR encoder on its inputs); '
        'default: model')
    parser.add_argument(
        '--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument(
        '--compare-fused',
        action='store_true',
        help='time every config twice, interleaved: on the fast CPU paths '
        '(fused deformable attention kernel, LPE max-pool: "CONFIG [fused]") '
        'and on the plain PyTorch paths ("CONFIG [pytorch]"), and report '
        'the speed-ups')
    parser.add_argument(
        '--runs', type=int, default=10, help='timed runs (default: 10)')
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed runs (default: 2)')
    add_cfg_options_argument(parser)
    parser.add_argument('--json', help='write the results to this JSON file')
    args = parser.parse_args(argv)
    duplicates = sorted({c for c in args.configs if args.configs.count(c) > 1})
    if duplicates:
        parser.error(f'configs given more than once: {duplicates}')
    if args.runs <= 0 or args.warmup < 0:
        parser.error('--runs must be positive and --warmup non-negative')
    if args.threads is not None and args.threads <= 0:
        parser.error(f'--threads must be positive, got {args.threads}')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available')
    if args.compare_fused and not is_available():
        parser.error('--compare-fused: the C++ extension proscale._ext was '
                     'not built')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    workloads = {}
    for config in args.configs:
        with report_user_errors():
            cfg = load_analysis_config(config, args.cfg_options)
        with report_user_errors(cfg):
            model = build_analysis_model(cfg, args.device)
            workloads[config] = make_workload(model, tuple(args.shape),
                                              args.part)
    if args.compare_fused:
        workloads = {
            f'{config} [{path}]': with_cpu_path(fn, path)
            for path in CPU_PATHS
            for config, fn in workloads.items()
        }
    results = benchmark(workloads, args.runs, args.warmup, args.device)
    print(f'part={args.part} shape={args.shape[0]}x{args.shape[1]} '
          f'device={args.device} threads={torch.get_num_threads()} '
          f'runs={args.runs} warmup={args.warmup}')
    print(format_benchmark(results))
    if args.compare_fused:
        speedups = fused_speedups(results, args.configs)
        for config, speedup in speedups.items():
            print(f'{config}: fused {speedup:.2f}x faster than pytorch')
        results = dict(timings=results, fused_speedup=speedups)
    dump_json(results, args.json)
    return results


if __name__ == '__main__':
    main()
