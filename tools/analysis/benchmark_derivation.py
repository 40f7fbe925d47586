# Copyright (c) The proscale Authors. All rights reserved.
"""Benchmark ECO-M2F step B: one-pass derivation vs one model run per exit.

On the same images (preloaded, so data loading is not timed) it times

* one pass (``DeriveExitDatasetLoop``'s per-image step): backbone and
  encoder once, decoder + post-processing + in-memory PQ at every exit;
* the naive way: for every exit, ``set_exit(k)`` and the whole model again
  (``predict``), scored with the same in-memory PQ;
* the naive way scored by mmdet's ``CocoPanopticMetric`` image by image (PNG
  write and read, panopticapi), which is what evaluating every exit with
  ``tools/test.py`` would do.

It checks that the three give the same per-image PQ/SQ/RQ (the first two
exactly, the metric to 1e-9) and prints the times and speed ratios. As in
the derivation tool, instance and semantic post-processing are off in every
path (only panoptic results are scored).

Example:
    python tools/analysis/benchmark_derivation.py CONFIG CKPT \
        --split val --num-images 20
"""
import argparse
import os.path as osp
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from mmdet.evaluation import CocoPanopticMetric
from mmdet.registry import DATASETS, MODELS
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from proscale.engine.loops import (
    derive_exit_dataset_loop as derivation)
from proscale.evaluation import (
    PanopticExitQuality)
from proscale.evaluation.exit_dataset import (
    GROUPS, METRICS)
from proscale.utils.cli import (
    add_cfg_options_argument, dump_json, load_config, report_user_errors)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time one-pass exit derivation against rerunning the '
        'model once per exit, and check that both agree')
    parser.add_argument('config', help='config of the early-exit parent')
    parser.add_argument('checkpoint', help='checkpoint of the parent')
    parser.add_argument('--split', choices=derivation.SPLITS, default='val')
    parser.add_argument(
        '--num-images', type=int, default=20, help='images (default: 20)')
    parser.add_argument(
        '--exits', type=int, nargs='+', help='default: all exits')
    parser.add_argument(
        '--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--json', help='also write the results to this file')
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def _metric_table(metric: CocoPanopticMetric, data_sample) -> np.ndarray:
    """Score one prediction with CocoPanopticMetric, returning (3, 3)."""
    metric.process({}, [data_sample.to_dict()])
    pq_stat = metric.results.pop()
    table = np.full((len(GROUPS), len(METRICS)), np.nan)
    for i, isthing in enumerate((None, True, False)):
        try:
            results = pq_stat.pq_average(metric.categories, isthing)[0]
        except ZeroDivisionError:
            continue
        table[i] = [results[name] for name in METRICS]
    return table


def _synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def run_benchmark(args: argparse.Namespace) -> Dict[str, object]:
    """Time and compare the three ways; see the module docstring.

    Returns:
        dict: Times in seconds, speed ratios and the largest differences.
    """
    cfg = load_config(args.config, args.cfg_options)
    # As tools/eco/derive_exit_dataset.py: only panoptic results are scored.
    cfg.model.setdefault('test_cfg', {}).update(
        instance_on=False, semantic_on=False)
    if args.threads:
        torch.set_num_threads(args.threads)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    model.to(args.device).eval()
    exits = model.check_exits(model.exit_layers if args.exits is
                              None else args.exits)
    dataset = DATASETS.build(
        derivation.derive_dataloader_cfg(cfg, args.split)['dataset'])
    dataset.full_init()
    num_images = min(args.num_images, len(dataset))
    if num_images < 1:
        raise ValueError(f'--num-images must be >= 1, got {args.num_images}')
    infos = [dataset.get_data_info(i) for i in range(num_images)]
    batches = [pseudo_collate([dataset[i]]) for i in range(num_images)]
    quality = PanopticExitQuality(dataset)
    evaluator = quality.evaluator
    metric = CocoPanopticMetric(
        ann_file=dataset.ann_file,
        seg_prefix=osp.dirname(infos[0]['seg_map_path']))
    metric.dataset_meta = dataset.metainfo

    def one_pass(index: int) -> np.ndarray:
        row = derivation.derive_image(model, batches[index], exits, quality,
                                      infos[index]['img_id'])
        return np.stack([row[name] for name in METRICS], axis=-1)

    one_pass(0)  # warm-up
    _synchronize(args.device)
    start = time.perf_counter()
    ours = np.stack([one_pass(i) for i in range(num_images)])
    _synchronize(args.device)
    one_pass_time = time.perf_counter() - start

    naive = np.zeros_like(ours)
    naive_metric = np.zeros_like(ours)
    model_time = scoring_time = metric_time = 0.0
    with torch.no_grad():
        for j, exit_layer in enumerate(exits):
            model.set_exit(exit_layer)
            for i, (batch, info) in enumerate(zip(batches, infos)):
                _synchronize(args.device)
                start = time.perf_counter()
                data = model.data_preprocessor(batch, False)
                sample = model.predict(data['inputs'], data['data_samples'])[0]
                _synchronize(args.device)
                model_time += time.perf_counter() - start
                start = time.perf_counter()
                naive[i, j] = evaluator.evaluate(info['img_id'],
                                                 info['seg_map_path'],
                                                 [sample.pred_panoptic_seg])[0]
                scoring_time += time.perf_counter() - start
                start = time.perf_counter()
                naive_metric[i, j] = _metric_table(metric, sample)
                metric_time += time.perf_counter() - start
    model.set_exit(None)

    def max_difference(other: np.ndarray) -> float:
        if not np.array_equal(np.isnan(ours), np.isnan(other)):
            return float('inf')
        finite = ~np.isnan(ours)
        return float(np.abs(ours[finite] - other[finite]).max(initial=0.0))

    return dict(
        config=args.config,
        checkpoint=args.checkpoint,
        device=args.device,
        threads=torch.get_num_threads(),
        num_images=num_images,
        exits=exits,
        one_pass_s=one_pass_time,
        per_exit_rerun_s=model_time + scoring_time,
        per_exit_rerun_with_metric_s=model_time + metric_time,
        speedup_vs_rerun=(model_time + scoring_time) / one_pass_time,
        speedup_vs_rerun_with_metric=(model_time + metric_time) /
        one_pass_time,
        max_diff_vs_rerun=max_difference(naive),
        max_diff_vs_metric=max_difference(naive_metric),
        mean_pq_per_exit=dict(
            zip(
                map(str, exits),
                np.nanmean(ours[:, :, 0, 0], axis=0).tolist())))


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with report_user_errors():
        results = run_benchmark(args)
    print(f"{results['num_images']} images, exits {results['exits']}, "
          f"{results['device']} ({results['threads']} threads)")
    print(f"  one pass (backbone + encoder once):  "
          f"{results['one_pass_s']:8.2f} s")
    print(f"  whole model once per exit:           "
          f"{results['per_exit_rerun_s']:8.2f} s  "
          f"({results['speedup_vs_rerun']:.2f}x slower)")
    print(f"  ... scored by CocoPanopticMetric:    "
          f"{results['per_exit_rerun_with_metric_s']:8.2f} s  "
          f"({results['speedup_vs_rerun_with_metric']:.2f}x slower)")
    print(f"  max |difference| of PQ/SQ/RQ: vs rerun "
          f"{results['max_diff_vs_rerun']:.3g}, vs metric "
          f"{results['max_diff_vs_metric']:.3g}")
    print('  mean per-image PQ (All) per exit: ' +
          ', '.join(f'{k}: {100 * v:.2f}'
                    for k, v in results['mean_pq_per_exit'].items()))
    dump_json(results, args.json)
    if results['max_diff_vs_rerun'] != 0 or results[
            'max_diff_vs_metric'] > 1e-9:
        raise SystemExit('error: the one-pass results differ from the '
                         'per-exit runs')


if __name__ == '__main__':
    main()
