# Copyright (c) The proscale Authors. All rights reserved.
"""The end-to-end demo: both methods on the embedded synthetic dataset.

Stages, each run through the project's user-facing tool (see
:mod:`.stages` for caching and logging):

1. generate the synthetic panoptic dataset
   (``tools/dataset_converters/generate_synthetic_panoptic.py``);
2. train the tiny Mask2Former baseline, the tiny PRO-SCALE model and the tiny
   ECO-M2F parent (step A) with one recipe (``tools/train.py``);
3. evaluate the baseline and PRO-SCALE on the val split (``tools/test.py``)
   and the parent at every exit (``tools/eco/eval_exits.py``);
4. ECO-M2F step B, derive the per-image exit dataset of the training split
   (``tools/eco/derive_exit_dataset.py``);
5. ECO-M2F step C, train the gate and merge it into the parent
   (``tools/eco/train_gate.py``, ``tools/eco/merge_gate.py``), then evaluate
   the gated model (``tools/test.py``);
6. count GFLOPs (``tools/analysis/get_flops.py``) and measure the CPU latency
   of every model interleaved in one process
   (``tools/analysis/benchmark.py``);
7. report: the comparison table, ``summary.json``, the PQ-vs-GFLOPs plot and
   per-image visualisations (:mod:`.report`).
"""
import glob
import json
import os
import os.path as osp
import pickle
import shutil
import sys
from typing import Any, Dict, List, Optional, TextIO, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from ..evaluation import load_exit_dataset
from .report import DemoReport
from .settings import DemoSettings
from .stages import (REPO_ROOT, StageError, StageResult, StageRunner,
                     stage_key)

BASELINE_CONFIG = 'configs/mask2former/' \
    'mask2former_r18_1xb4-tiny_synthetic-panoptic.py'
PROSCALE_CONFIG = 'configs/proscale/' \
    'mask2former_r18_proscale-333_1xb4-tiny_synthetic-panoptic.py'
PARENT_CONFIG = 'configs/eco_m2f/' \
    'eco-m2f-parent_r18_1xb4-tiny_synthetic-panoptic.py'
GATED_CONFIG = 'configs/eco_m2f/' \
    'eco-m2f-gated_r18_1xb4-tiny_synthetic-panoptic.py'
MODEL_CONFIGS = dict(
    baseline=BASELINE_CONFIG,
    proscale=PROSCALE_CONFIG,
    eco_parent=PARENT_CONFIG)
# Marks a folder as a demo work dir, which ``--fresh`` may empty.
WORK_DIR_MARKER = '.proscale-demo'
PANOPTIC_PREFIX = 'coco_panoptic/'


def repo_path(relative: str) -> str:
    """Absolute path of a file of the repository."""
    return osp.join(REPO_ROOT, relative)


def config_fingerprint(config: str) -> str:
    """A hash that changes whenever the merged config changes."""
    cfg = Config.fromfile(repo_path(config))
    return stage_key(cfg.to_dict())


def data_cfg_options(data_root: str) -> List[str]:
    """``--cfg-options`` pointing a synthetic-panoptic config at a dataset.

    Args:
        data_root (str): Dataset root, ending with a slash.

    Returns:
        list[str]: ``key=value`` items for every dataloader and evaluator.
    """
    options = [
        f'{loader}.dataset.data_root={data_root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
    for evaluator in ('val_evaluator', 'test_evaluator'):
        options += [
            f'{evaluator}.0.ann_file={data_root}annotations/'
            'panoptic_val.json',
            f'{evaluator}.0.seg_prefix={data_root}annotations/panoptic_val/',
            f'{evaluator}.1.ann_file={data_root}annotations/'
            'instances_val.json',
        ]
    return options


def recipe_cfg_options(settings: DemoSettings) -> List[str]:
    """``--cfg-options`` of the demo's training recipe.

    The length of a training is not among them: ``tools/train.py
    --max-iters`` rescales the config's whole schedule to it. Training runs
    without validation: every model is evaluated afterwards by its own
    stage.

    Args:
        settings (DemoSettings): The demo's settings.

    Returns:
        list[str]: ``key=value`` items.
    """
    options = [
        f'randomness.seed={settings.seed}',
        f'default_hooks.logger.interval={settings.log_interval}',
        'val_dataloader=None',
        'val_cfg=None',
        'val_evaluator=None',
    ]
    if settings.lr is not None:
        options.append(f'optim_wrapper.optimizer.lr={settings.lr}')
    return options


def read_test_metrics(eval_dir: str) -> Dict[str, float]:
    """Read the metrics ``tools/test.py`` logged under its work dir.

    mmengine's ``LoggerHook`` writes them to ``<work_dir>/<timestamp>/
    <timestamp>.json``; the newest run's file is read.

    Args:
        eval_dir (str): The ``--work-dir`` of ``tools/test.py``.

    Returns:
        dict[str, float]: Metric name (e.g. ``coco_panoptic/PQ``) to value.
    """
    files = sorted(glob.glob(osp.join(eval_dir, '*', '*.json')))
    if not files:
        raise StageError(f'tools/test.py wrote no metrics under {eval_dir}')
    with open(files[-1]) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    return json.loads(lines[-1])


def panoptic_metrics(metrics: Dict[str, Any], prefix: str = '') -> dict:
    """Pick PQ / SQ / RQ (percent) out of a metrics dict.

    Args:
        metrics (dict): Metrics as the evaluators name them.
        prefix (str): Prefix of the keys before ``coco_panoptic/``.

    Returns:
        dict: ``PQ``, ``SQ``, ``RQ``, ``PQ_th`` and ``PQ_st``.
    """
    names = ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st')
    missing = [
        name for name in names
        if f'{prefix}{PANOPTIC_PREFIX}{name}' not in metrics
    ]
    if missing:
        raise StageError(f'no {prefix}{PANOPTIC_PREFIX}{missing[0]} among '
                         f'the metrics {sorted(metrics)}')
    return {
        name: float(metrics[f'{prefix}{PANOPTIC_PREFIX}{name}'])
        for name in names
    }


class DemoPipeline:
    """Run the demo's stages and write its report.

    Args:
        work_dir (str): Output folder (everything goes under it).
        settings (DemoSettings): Sizes and recipe.
        fresh (bool): Discard earlier results instead of reusing finished
            stages. Defaults to False.
        console (TextIO, optional): Where progress goes. Defaults to
            ``sys.stdout``.
    """

    def __init__(self,
                 work_dir: str,
                 settings: DemoSettings,
                 fresh: bool = False,
                 console: Optional[TextIO] = None) -> None:
        self.work_dir = osp.abspath(work_dir)
        self.settings = settings
        self._prepare_work_dir(fresh)
        self.logger = MMLogger.get_instance(
            f'proscale_demo_{id(self)}',
            logger_name='demo',
            log_file=osp.join(self.work_dir, 'demo.log'),
            file_mode='a')
        self.stages = StageRunner(self.work_dir, console or sys.stdout,
                                  self.logger)
        self.data_root = osp.join(self.work_dir, 'data', 'synthetic') + '/'
        self.stages.abbreviate(
            data_cfg_options(self.data_root), '<data_root and ann_file '
            'options of every dataloader and evaluator -> DATA>')
        self._fingerprints = {
            name: config_fingerprint(config)
            for name, config in dict(MODEL_CONFIGS,
                                     gated=GATED_CONFIG).items()
        }

    def _test_stage_inputs(self, name: str,
                           **upstream: str) -> Tuple[List[str], dict]:
        """``--cfg-options`` and parameters of a stage that runs a model of
        the demo at test time.

        Args:
            name (str): The model's key in the config fingerprints.
            **upstream (str): Keys of the stages it depends on (e.g.
                ``model=trained.key``).

        Returns:
            tuple[list[str], dict]: The data options, and the
            stage's parameters (config fingerprint, options, upstream keys).
        """
        options = data_cfg_options(self.data_root)
        return options, dict(
            config=self._fingerprints[name], options=options, **upstream)

    def _prepare_work_dir(self, fresh: bool) -> None:
        marker = osp.join(self.work_dir, WORK_DIR_MARKER)
        if fresh and osp.isdir(self.work_dir) and os.listdir(self.work_dir):
            if not osp.isfile(marker):
                raise ValueError(
                    f'--fresh: {self.work_dir} is not a demo work dir (no '
                    f'{WORK_DIR_MARKER} file); refusing to delete it')
            shutil.rmtree(self.work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        with open(marker, 'a'):
            pass

    def run(self) -> Dict[str, dict]:
        """Run every stage (reusing finished ones) and write the report.

        Returns:
            dict: The summary written to ``summary.json``.
        """
        if self.settings.threads is not None:
            torch.set_num_threads(self.settings.threads)
        self.logger.info(f'proscale demo in {self.work_dir} (torch threads: '
                         f'{torch.get_num_threads()}); settings: '
                         f'{self.settings.to_dict()}; DATA={self.data_root}')
        data = self.generate_data()
        trained = {
            name: self.train(name, MODEL_CONFIGS[name], data)
            for name in ('baseline', 'proscale')
        }
        trained['eco_parent'] = self.train(
            'eco_parent',
            PARENT_CONFIG,
            data,
            init=trained['baseline']
            if self.settings.parent_from_baseline else None)
        evaluated = {
            name: self.evaluate(name, MODEL_CONFIGS[name], trained[name])
            for name in ('baseline', 'proscale')
        }
        exits = self.evaluate_exits(trained['eco_parent'])
        derived = self.derive_exit_dataset(trained['eco_parent'])
        gate = self.train_gate(trained['eco_parent'], derived, exits)
        gated = self.evaluate_gated(gate)
        flops = {
            name: self.count_flops(name, MODEL_CONFIGS[name])
            for name in ('baseline', 'proscale')
        }
        flops['eco_gated'] = self.count_flops(
            'eco_gated', GATED_CONFIG, gate=gate)
        latency = self.measure_latency(exits)

        report = DemoReport(
            work_dir=self.work_dir,
            data_root=self.data_root,
            settings=self.settings,
            evaluated={
                k: v.results
                for k, v in evaluated.items()
            },
            exits=exits.results,
            gate=gate.results,
            gated=gated.results,
            flops={
                k: v.results
                for k, v in flops.items()
            },
            latency=latency.results)
        summary = report.write(self.logger)
        self.logger.info(
            f'stages run: {self.stages.num_run}, reused: '
            f'{self.stages.num_reused}; outputs in {self.work_dir}')
        return summary

    # Stages -----------------------------------------------------------

    def generate_data(self) -> StageResult:
        """Generate the synthetic panoptic dataset."""
        s = self.settings
        params = dict(
            num_train=s.num_train,
            num_val=s.num_val,
            image_size=s.image_size,
            seed=s.data_seed)

        def body(key: str) -> dict:
            self.stages.tool(
                'tools/dataset_converters/generate_synthetic_panoptic.py',
                self.data_root, '--num-train', s.num_train, '--num-val',
                s.num_val, '--image-size', s.image_size, '--seed', s.data_seed,
                '--force')
            return params

        return self.stages.run(
            'data', f'Generate the synthetic dataset ({s.num_train} train / '
            f'{s.num_val} val images, {s.image_size}x{s.image_size})', params,
            [osp.join(self.data_root, 'synthetic_panoptic.json')], body)

    def train(self,
              name: str,
              config: str,
              data: StageResult,
              init: Optional[StageResult] = None) -> StageResult:
        """Train one model with the demo's recipe.

        Args:
            name (str): 'baseline', 'proscale' or 'eco_parent'.
            config (str): Its config.
            data (StageResult): The dataset stage.
            init (StageResult, optional): A training stage whose checkpoint
                the model starts from (``load_from``).

        Returns:
            StageResult: ``checkpoint`` of the last iteration.
        """
        s = self.settings
        iters = s.parent_iters if name == 'eco_parent' else s.train_iters
        train_dir = self.stages.path('train', name)
        checkpoint = osp.join(train_dir, f'iter_{iters}.pth')
        options = data_cfg_options(self.data_root) + recipe_cfg_options(s)
        if name == 'eco_parent':
            options.append(f'custom_hooks.0.exits_per_iter={s.exits_per_iter}')
        if init is not None:
            options.append(f"load_from={init.results['checkpoint']}")
        params = dict(
            config=self._fingerprints[name],
            max_iters=iters,
            options=options,
            data=data.key,
            init=None if init is None else init.key)

        def body(key: str) -> dict:
            resumable = self.stages.prepare_dir(train_dir, key)
            resume = ['--resume'] if resumable and osp.isfile(
                osp.join(train_dir, 'last_checkpoint')) else []
            self.stages.tool('tools/train.py', repo_path(config), '--work-dir',
                             train_dir, *resume, '--max-iters', iters,
                             '--cfg-options', *options)
            return dict(checkpoint=checkpoint)

        titles = dict(
            baseline='Train the tiny Mask2Former baseline',
            proscale='Train the tiny PRO-SCALE (3,3,3) model',
            eco_parent='ECO-M2F step A: train the tiny early-exit parent')
        start = ', starting from the baseline' if init is not None else ''
        return self.stages.run(f'train_{name}',
                               f'{titles[name]} ({iters} iters{start})',
                               params, [checkpoint], body)

    def evaluate(self, name: str, config: str,
                 trained: StageResult) -> StageResult:
        """Evaluate a trained model on the val split with tools/test.py."""
        eval_dir = self.stages.path('eval', name)
        options, params = self._test_stage_inputs(name, model=trained.key)

        def body(key: str) -> dict:
            self.stages.prepare_dir(eval_dir, key)
            self.stages.tool('tools/test.py', repo_path(config),
                             trained.results['checkpoint'], '--work-dir',
                             eval_dir, '--cfg-options', *options)
            metrics = panoptic_metrics(read_test_metrics(eval_dir))
            self.logger.info(f'     {name}: ' + self._format_pq(metrics))
            return metrics

        return self.stages.run(f'eval_{name}',
                               f'Evaluate {name} on the val split', params, [],
                               body)

    def evaluate_exits(self, trained: StageResult) -> StageResult:
        """Evaluate the ECO-M2F parent at every exit in one pass."""
        eval_dir = self.stages.path('eval', 'eco_parent')
        out = osp.join(eval_dir, 'exits.json')
        options, params = self._test_stage_inputs(
            'eco_parent', model=trained.key)

        def body(key: str) -> dict:
            self.stages.prepare_dir(eval_dir, key)
            # Every synthetic image has the same size, so one image gives
            # the GFLOPs of every exit exactly.
            self.stages.tool('tools/eco/eval_exits.py',
                             repo_path(PARENT_CONFIG),
                             trained.results['checkpoint'], '--json', out,
                             '--flops-images', 1, '--work-dir', eval_dir,
                             '--cfg-options', *options)
            with open(out) as f:
                per_exit = json.load(f)['exits']
            results = {}
            for exit_layer, metrics in per_exit.items():
                results[exit_layer] = dict(
                    panoptic_metrics(metrics),
                    total_gflops=metrics['gflops']['total'],
                    encoder_gflops=metrics['gflops']['encoder'])
                self.logger.info(f'     exit {exit_layer}: ' +
                                 self._format_pq(results[exit_layer]))
            return results

        return self.stages.run('eval_eco_parent',
                               'Evaluate the ECO-M2F parent at every exit',
                               params, [out], body)

    def derive_exit_dataset(self, trained: StageResult) -> StageResult:
        """ECO-M2F step B on the training split."""
        eco_dir = self.stages.path('eco')
        out = osp.join(eco_dir, 'derived_train.npz')
        options, params = self._test_stage_inputs(
            'eco_parent', model=trained.key)

        def body(key: str) -> dict:
            resumable = self.stages.prepare_dir(eco_dir, key)
            self.stages.tool('tools/eco/derive_exit_dataset.py',
                             repo_path(PARENT_CONFIG),
                             trained.results['checkpoint'], '--out', out,
                             '--split', 'train', '--work-dir',
                             osp.join(eco_dir, 'derive'),
                             *(['--resume'] if resumable else []),
                             '--cfg-options', *options)
            dataset = load_exit_dataset(out)
            mean_pq = np.nanmean(dataset.quality('pq', 'All'), axis=0) * 100
            results = dict(
                num_images=len(dataset),
                mean_pq={
                    str(k): float(q)
                    for k, q in zip(dataset.exits.tolist(), mean_pq)
                })
            self.logger.info(
                f'     {len(dataset)} images; mean per-image PQ by exit: ' +
                ', '.join(f'{k}: {q:.1f}'
                          for k, q in results['mean_pq'].items()))
            return results

        return self.stages.run(
            'derive_exit_dataset',
            'ECO-M2F step B: derive the per-image exit dataset (train split)',
            params, [out], body)

    def train_gate(self, trained: StageResult, derived: StageResult,
                   exits: StageResult) -> StageResult:
        """ECO-M2F step C: train the gate and merge it into the parent."""
        s = self.settings
        gate_dir = self.stages.path('gate')
        derived_file = self.stages.path('eco', 'derived_train.npz')
        gate_file = osp.join(gate_dir, 'gate.pth')
        figures_file = osp.join(gate_dir, 'gate.json')
        merged = osp.join(gate_dir, 'eco_gated.pth')
        exit_gflops = [
            exits.results[k]['total_gflops']
            for k in sorted(exits.results, key=int)
        ]
        params = dict(
            beta=s.beta,
            iters=s.gate_iters,
            gated_config=self._fingerprints['gated'],
            derived=derived.key,
            model=trained.key,
            exit_gflops=exit_gflops)

        def body(key: str) -> dict:
            self.stages.prepare_dir(gate_dir, key)
            self.stages.tool('tools/eco/train_gate.py', derived_file, '--beta',
                             s.beta, '--iters', s.gate_iters, '--exit-gflops',
                             *exit_gflops, '--out', gate_file, '--json',
                             figures_file)
            self.stages.tool('tools/eco/merge_gate.py',
                             trained.results['checkpoint'], gate_file, '--out',
                             merged, '--config', repo_path(GATED_CONFIG))
            with open(figures_file) as f:
                figures = json.load(f)
            held_out = figures['val']
            self.logger.info(
                f"     held-out: accuracy {held_out['accuracy']:.2f}, mean "
                f"depth {held_out['mean_depth']:.2f}, exits " +
                ', '.join(f'{k}: {share:.0%}'
                          for k, share in held_out['histogram'].items()))
            return dict(
                beta=figures['beta'], held_out=held_out, checkpoint=merged)

        return self.stages.run(
            'train_gate', f'ECO-M2F step C: train the exit gate '
            f'(beta={s.beta:g}) and merge it into the parent', params,
            [merged], body)

    def evaluate_gated(self, gate: StageResult) -> StageResult:
        """Evaluate the gated ECO-M2F model; keep every image's exit."""
        eval_dir = self.stages.path('eval', 'eco_gated')
        predictions = osp.join(eval_dir, 'predictions.pkl')
        options, params = self._test_stage_inputs('gated', gate=gate.key)

        def body(key: str) -> dict:
            self.stages.prepare_dir(eval_dir, key)
            self.stages.tool('tools/test.py', repo_path(GATED_CONFIG),
                             gate.results['checkpoint'], '--work-dir',
                             eval_dir, '--out', predictions, '--cfg-options',
                             *options)
            metrics = panoptic_metrics(read_test_metrics(eval_dir))
            with open(predictions, 'rb') as f:
                samples = pickle.load(f)
            image_exits = {
                str(sample['img_id']): int(sample['exit_layer'])
                for sample in samples
            }
            depths = np.array(list(image_exits.values()))
            metrics.update(
                mean_depth=float(depths.mean()),
                histogram={
                    str(k): float((depths == k).mean())
                    for k in np.unique(depths).tolist()
                },
                image_exits=image_exits,
                predictions=predictions)
            self.logger.info(
                '     eco_gated: ' + self._format_pq(metrics) +
                f", mean encoder depth {metrics['mean_depth']:.2f}")
            return metrics

        return self.stages.run('eval_eco_gated',
                               'Evaluate the gated ECO-M2F model', params,
                               [predictions], body)

    def count_flops(self,
                    name: str,
                    config: str,
                    gate: Optional[StageResult] = None) -> StageResult:
        """Count GFLOPs (papers' convention) with get_flops.py.

        The fixed models get one count at the images' size (every synthetic
        image has the same size); the gated model is averaged over all val
        images, each through the exit its gate picks.
        """
        s = self.settings
        out = self.stages.path('analysis', f'flops_{name}.json')
        if gate is None:
            args = ['--shape', s.image_size, s.image_size]
            params = dict(config=self._fingerprints[name], size=s.image_size)
        else:
            args = [
                '--checkpoint', gate.results['checkpoint'], '--num-images',
                s.num_val, '--cfg-options'
            ] + data_cfg_options(self.data_root)
            params = dict(
                config=self._fingerprints['gated'],
                gate=gate.key,
                num_images=s.num_val)

        def body(key: str) -> dict:
            os.makedirs(osp.dirname(out), exist_ok=True)
            self.stages.tool('tools/analysis/get_flops.py', repo_path(config),
                             '--json', out, *args)
            with open(out) as f:
                flops = json.load(f)
            self.logger.info(f"     {name}: {flops['total']:.3f} GFLOPs, "
                             f"encoder {flops['encoder']:.3f}")
            return flops

        return self.stages.run(f'flops_{name}', f'Count the GFLOPs of {name}',
                               params, [out], body)

    def measure_latency(self, exits: StageResult) -> StageResult:
        """Time every model interleaved in one process (benchmark.py).

        The parent at exit ``k`` runs its first ``k`` encoder layers and the
        shared decoder, which is the parent built with a ``k``-layer encoder:
        those configs, written under ``<work_dir>/analysis/configs``, give
        the latency of every exit.
        """
        s = self.settings
        analysis_dir = self.stages.path('analysis')
        out = osp.join(analysis_dir, 'latency.json')
        exit_layers = sorted(int(k) for k in exits.results)
        params = dict(
            configs={name: self._fingerprints[name]
                     for name in MODEL_CONFIGS},
            exits=exit_layers,
            size=s.image_size,
            runs=s.benchmark_runs,
            warmup=s.benchmark_warmup,
            threads=torch.get_num_threads())

        def body(key: str) -> dict:
            configs = dict((name, repo_path(config))
                           for name, config in MODEL_CONFIGS.items())
            for k in exit_layers[:-1]:
                configs[f'eco_exit{k}'] = self._write_exit_config(
                    osp.join(analysis_dir, 'configs'), k)
            self.stages.tool('tools/analysis/benchmark.py', *configs.values(),
                             '--shape', s.image_size, s.image_size, '--part',
                             'model', '--runs', s.benchmark_runs, '--warmup',
                             s.benchmark_warmup, '--threads',
                             torch.get_num_threads(), '--json', out)
            with open(out) as f:
                timings = json.load(f)
            results = {name: timings[path] for name, path in configs.items()}
            results[f'eco_exit{exit_layers[-1]}'] = results['eco_parent']
            self.logger.info('     latency ratio to the baseline: ' +
                             ', '.join(f"{name} {r['ratio']:.2f}"
                                       for name, r in results.items()))
            return results

        return self.stages.run(
            'latency', 'Measure the CPU latency of every model '
            '(interleaved, one process)', params, [out], body)

    # Helpers ----------------------------------------------------------

    @staticmethod
    def _write_exit_config(folder: str, exit_layer: int) -> str:
        """Write the config of the parent cut after ``exit_layer`` layers."""
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, f'eco-m2f-parent-exit{exit_layer}.py')
        with open(path, 'w') as f:
            f.write('# The tiny ECO-M2F parent cut after its exit '
                    f'{exit_layer}: the cost of that exit.\n'
                    f'_base_ = {repo_path(PARENT_CONFIG)!r}\n'
                    'model = dict(panoptic_head=dict(pixel_decoder=dict('
                    f'encoder=dict(num_layers={exit_layer}))))\n')
        return path

    @staticmethod
    def _format_pq(metrics: dict) -> str:
        return (f"PQ {metrics['PQ']:.2f}  SQ {metrics['SQ']:.2f}  "
                f"RQ {metrics['RQ']:.2f}")
