# Copyright (c) The proscale Authors. All rights reserved.
"""The demo's report: comparison table, summary.json, plot, visualisations.

``summary.json`` holds, for ``baseline``, ``proscale``, ``eco_parent`` (the
parent at full depth) and ``eco_gated``: ``PQ``, ``SQ``, ``RQ`` (percent),
``encoder_gflops`` and ``total_gflops`` (papers' convention, from
``tools/analysis/get_flops.py`` and ``tools/eco/eval_exits.py``) and
``latency_ratio`` (median CPU latency over the baseline's, from
``tools/analysis/benchmark.py``); ``eco_parent`` also ``pq_per_exit``
(exit -> PQ) and ``eco_gated`` also ``mean_depth`` (mean encoder layers run
on the val images) and ``beta``. The gated model's latency ratio is the
expectation over its exits: the share of val images the gate sent to exit
``k`` times the measured ratio of exit ``k``.
"""
import json
import os
import os.path as osp
import pickle
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmengine.logging import MMLogger
from panopticapi.utils import rgb2id
from PIL import Image

from ..datasets import SYNTHETIC_PANOPTIC_METAINFO
from .settings import DemoSettings
from .stages import atomic_write_json

MODEL_NAMES = dict(
    baseline='Mask2Former (baseline)',
    proscale='PRO-SCALE (3,3,3)',
    eco_parent='ECO-M2F parent',
    eco_gated='ECO-M2F gated')
METRIC_KEYS = ('PQ', 'SQ', 'RQ')
VOID_COLOR = (0, 0, 0)
BOUNDARY_COLOR = (255, 255, 255)


def colorize_panoptic(labels: np.ndarray, instances: np.ndarray,
                      palette: List[Tuple[int, int, int]]) -> np.ndarray:
    """Paint a panoptic map: class colours, shaded per instance, with
    segment boundaries.

    Args:
        labels (np.ndarray): Class index per pixel, shape (H, W); values
            outside the palette are void.
        instances (np.ndarray): Segment id per pixel, shape (H, W); pixels
            of one segment share an id.
        palette (list[tuple[int, int, int]]): RGB colour of every class.

    Returns:
        np.ndarray: RGB image, shape (H, W, 3), uint8.
    """
    colors = np.array(list(palette) + [VOID_COLOR], dtype=np.float64)
    index = np.where((labels >= 0) & (labels < len(palette)), labels,
                     len(palette))
    image = colors[index]
    # Different instances of one class get different brightness.
    shade = 0.65 + 0.35 * ((instances * 7919) % 11) / 10
    image *= np.where(index < len(palette), shade, 1.0)[..., None]
    edges = np.zeros(labels.shape, dtype=bool)
    edges[1:, :] |= instances[1:, :] != instances[:-1, :]
    edges[:, 1:] |= instances[:, 1:] != instances[:, :-1]
    image[edges] = BOUNDARY_COLOR
    return image.clip(0, 255).astype(np.uint8)


@dataclass
class DemoReport:
    """Turn the results of the demo's stages into its report.

    Args:
        work_dir (str): The demo's output folder.
        data_root (str): The synthetic dataset.
        settings (DemoSettings): The demo's settings.
        evaluated (dict): ``baseline`` / ``proscale`` -> PQ, SQ, RQ.
        exits (dict): Exit (str) -> the parent's PQ, SQ, RQ and GFLOPs.
        gate (dict): The gate stage's results (``beta``, held-out figures).
        gated (dict): The gated model's PQ, SQ, RQ, ``mean_depth``,
            ``histogram``, ``image_exits`` and ``predictions`` file.
        flops (dict): Model -> get_flops.py figures.
        latency (dict): Model (and ``eco_exit{k}``) -> benchmark figures.
    """
    work_dir: str
    data_root: str
    settings: DemoSettings
    evaluated: Dict[str, dict]
    exits: Dict[str, dict]
    gate: Dict[str, Any]
    gated: Dict[str, Any]
    flops: Dict[str, dict]
    latency: Dict[str, dict]

    @property
    def exit_layers(self) -> List[int]:
        """The parent's exits, increasing; the last is the full model."""
        return sorted(int(k) for k in self.exits)

    def summary(self) -> Dict[str, dict]:
        """Return the content of ``summary.json``."""
        summary = {}
        for name in ('baseline', 'proscale'):
            summary[name] = self._entry(self.evaluated[name],
                                        self.flops[name]['encoder'],
                                        self.flops[name]['total'],
                                        self.latency[name]['ratio'])
        full = self.exits[str(self.exit_layers[-1])]
        summary['eco_parent'] = dict(
            self._entry(full, full['encoder_gflops'], full['total_gflops'],
                        self.latency['eco_parent']['ratio']),
            pq_per_exit={
                str(k): self.exits[str(k)]['PQ']
                for k in self.exit_layers
            })
        expected_ratio = sum(share * self.latency[f'eco_exit{k}']['ratio']
                             for k, share in self.gated['histogram'].items())
        summary['eco_gated'] = dict(
            self._entry(self.gated, self.flops['eco_gated']['encoder'],
                        self.flops['eco_gated']['total'], expected_ratio),
            mean_depth=self.gated['mean_depth'],
            beta=self.gate['beta'])
        return summary

    @staticmethod
    def _entry(metrics: dict, encoder_gflops: float, total_gflops: float,
               latency_ratio: float) -> dict:
        entry = {key: round(float(metrics[key]), 3) for key in METRIC_KEYS}
        entry.update(
            encoder_gflops=round(float(encoder_gflops), 5),
            total_gflops=round(float(total_gflops), 5),
            latency_ratio=round(float(latency_ratio), 3))
        return entry

    def table(self, summary: Dict[str, dict]) -> str:
        """Format the comparison table (every parent exit on its own row)."""
        header = ('model', 'PQ', 'SQ', 'RQ', 'enc GFLOPs', 'GFLOPs', 'latency',
                  'enc depth')
        rows = []
        for name in ('baseline', 'proscale'):
            rows.append(self._row(MODEL_NAMES[name], summary[name], '-'))
        for k in self.exit_layers:
            metrics = self.exits[str(k)]
            entry = self._entry(metrics, metrics['encoder_gflops'],
                                metrics['total_gflops'],
                                self.latency[f'eco_exit{k}']['ratio'])
            rows.append(
                self._row(f"{MODEL_NAMES['eco_parent']} @ exit {k}", entry,
                          str(k)))
        gated = summary['eco_gated']
        rows.append(
            self._row(f"{MODEL_NAMES['eco_gated']} (beta={gated['beta']:g})",
                      gated, f"{gated['mean_depth']:.2f}"))
        widths = [
            max(len(row[i]) for row in [header] + rows)
            for i in range(len(header))
        ]
        lines = [
            '  '.join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths)))
            for row in [header] + rows
        ]
        lines.insert(1, '-' * len(lines[0]))
        return '\n'.join(lines)

    @staticmethod
    def _row(name: str, entry: dict, depth: str) -> Tuple[str, ...]:
        return (name, *(f'{entry[key]:.2f}' for key in METRIC_KEYS),
                f"{entry['encoder_gflops']:.3f}",
                f"{entry['total_gflops']:.3f}",
                f"{entry['latency_ratio']:.2f}x", depth)

    def checks(self, summary: Dict[str, dict]) -> List[Tuple[str, bool]]:
        """The claims the demo shows, each with whether it holds.

        - PRO-SCALE loses at most 2 PQ points to the baseline (a gain is
          fine: the claim is the baseline's quality at a lower cost).
        - The parent's PQ rises with the exit depth: the least-squares slope
          of PQ over depth is positive and the deepest exit beats the
          shallowest (single exits may dip by evaluation noise).
        - The gated model runs fewer encoder layers than the parent on
          average and loses at most 1 PQ point to its full depth.
        - The gated model's PQ is at or above the parent's fixed-exit curve
          (PQ over total GFLOPs, linearly interpolated between neighbouring
          exits) at the gated model's GFLOPs: the gate beats choosing one
          depth for every image.
        """
        base, pro = summary['baseline'], summary['proscale']
        parent, gated = summary['eco_parent'], summary['eco_gated']
        per_exit = [parent['pq_per_exit'][str(k)] for k in self.exit_layers]
        slope = float(np.polyfit(self.exit_layers, per_exit, 1)[0])
        curve_pq = float(
            np.interp(gated['total_gflops'],
                      [self.exits[str(k)]['total_gflops']
                       for k in self.exit_layers], per_exit))
        return [
            (f"PRO-SCALE PQ {pro['PQ']:.2f} at most 2 points below the "
             f"baseline's {base['PQ']:.2f}, with "
             f"{1 - pro['encoder_gflops'] / base['encoder_gflops']:.0%} "
             'fewer encoder GFLOPs', base['PQ'] - pro['PQ'] <= 2.0),
            ('ECO-M2F parent PQ rises with the exit depth: ' +
             ' -> '.join(f'{pq:.2f}' for pq in per_exit) +
             f' ({slope:+.2f} PQ per layer)', slope > 0
             and per_exit[-1] > per_exit[0]),
            (f"gated ECO-M2F: mean encoder depth {gated['mean_depth']:.2f} "
             f"< {self.exit_layers[-1]}, PQ {gated['PQ']:.2f} at most 1 "
             f"point below the full parent's {parent['PQ']:.2f}",
             gated['mean_depth'] < self.exit_layers[-1]
             and parent['PQ'] - gated['PQ'] <= 1.0),
            (f"gated PQ {gated['PQ']:.2f} at or above the fixed-exit curve "
             f"interpolated at the same GFLOPs ({curve_pq:.2f} at "
             f"{gated['total_gflops']:.3f})", gated['PQ'] >= curve_pq),
        ]

    def plot(self, summary: Dict[str, dict], path: str) -> None:
        """Plot PQ against total GFLOPs of every model and parent exit."""
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6.4, 4.8))
        gflops = [self.exits[str(k)]['total_gflops'] for k in self.exit_layers]
        pq = [self.exits[str(k)]['PQ'] for k in self.exit_layers]
        axes.plot(
            gflops,
            pq,
            'o-',
            color='tab:blue',
            label='ECO-M2F parent, fixed exit')
        for k, x, y in zip(self.exit_layers, gflops, pq):
            axes.annotate(
                str(k), (x, y),
                textcoords='offset points',
                xytext=(0, -12),
                ha='center',
                fontsize=8)
        gated = summary['eco_gated']
        markers = dict(
            baseline=('s', 'black', MODEL_NAMES['baseline']),
            proscale=('D', 'tab:green', MODEL_NAMES['proscale']),
            eco_gated=('*', 'tab:red', f"{MODEL_NAMES['eco_gated']} "
                       f"(beta={gated['beta']:g}, depth "
                       f"{gated['mean_depth']:.2f})"))
        for name, (marker, color, label) in markers.items():
            axes.plot(
                summary[name]['total_gflops'],
                summary[name]['PQ'],
                marker,
                color=color,
                markersize=12 if marker == '*' else 8,
                label=label)
        axes.set_xlabel('GFLOPs per image (papers\' convention)')
        axes.set_ylabel('PQ on the synthetic val split')
        axes.set_title(
            f'{self.settings.image_size}x{self.settings.image_size} '
            'synthetic panoptic: quality vs. compute',
            fontsize=10)
        axes.grid(True, alpha=0.3)
        # Below the axes, where it cannot hide a model's marker.
        axes.legend(
            loc='upper center',
            bbox_to_anchor=(0.5, -0.14),
            ncol=2,
            fontsize=8)
        figure.savefig(path, dpi=120, bbox_inches='tight')
        plt.close(figure)

    def _pick_images(self) -> List[int]:
        """Val images to draw: a spread over the exits the gate chose."""
        by_exit: Dict[int, List[int]] = {}
        for img_id, exit_layer in sorted(
                self.gated['image_exits'].items(), key=lambda kv: int(kv[0])):
            by_exit.setdefault(exit_layer, []).append(int(img_id))
        picked: List[int] = []
        while len(picked) < self.settings.num_visualisations and any(
                by_exit.values()):
            for exit_layer in sorted(by_exit):
                if by_exit[exit_layer] and len(
                        picked) < self.settings.num_visualisations:
                    picked.append(by_exit[exit_layer].pop(0))
        return sorted(picked, key=lambda i: self.gated['image_exits'][str(i)])

    def visualise(self, out_dir: str) -> List[str]:
        """Draw image | ground truth | gated prediction for a few images.

        Args:
            out_dir (str): Output folder.

        Returns:
            list[str]: The PNG files written.
        """
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        with open(self.gated['predictions'], 'rb') as f:
            predictions = {int(s['img_id']): s for s in pickle.load(f)}
        with open(
                osp.join(self.data_root, 'annotations',
                         'panoptic_val.json')) as f:
            annotations = json.load(f)
        files = {img['id']: img['file_name'] for img in annotations['images']}
        segments = {ann['image_id']: ann for ann in annotations['annotations']}
        palette = SYNTHETIC_PANOPTIC_METAINFO['palette']
        os.makedirs(out_dir, exist_ok=True)
        written = []
        for img_id in self._pick_images():
            image = np.asarray(
                Image.open(osp.join(self.data_root, 'val', files[img_id])))
            ann = segments[img_id]
            gt_ids = rgb2id(
                np.asarray(
                    Image.open(
                        osp.join(self.data_root, 'annotations', 'panoptic_val',
                                 ann['file_name'])).convert('RGB')).astype(
                                     np.uint32))
            gt_labels = np.full(gt_ids.shape, -1, dtype=np.int64)
            for segment in ann['segments_info']:
                gt_labels[gt_ids == segment['id']] = segment['category_id'] - 1
            pred = np.asarray(
                predictions[img_id]['pred_panoptic_seg']['sem_seg'])[0]
            exit_layer = self.gated['image_exits'][str(img_id)]
            panels = [('image', image),
                      (f"ground truth ({len(ann['segments_info'])} segments)",
                       colorize_panoptic(gt_labels, gt_ids, palette)),
                      (f'prediction at exit {exit_layer}',
                       colorize_panoptic(pred % INSTANCE_OFFSET, pred,
                                         palette))]
            figure, axes = plt.subplots(1, 3, figsize=(9, 3.4))
            for ax, (title, content) in zip(axes, panels):
                ax.imshow(content, interpolation='nearest')
                ax.set_title(title, fontsize=9)
                ax.axis('off')
            figure.suptitle(
                f'val image {img_id}: the gate ran {exit_layer} of '
                f'{self.exit_layers[-1]} encoder layers',
                fontsize=10)
            figure.tight_layout()
            path = osp.join(out_dir, f'val_{img_id:06d}_exit{exit_layer}.png')
            figure.savefig(path, dpi=100)
            plt.close(figure)
            written.append(path)
        return written

    def write(self, logger: MMLogger) -> Dict[str, dict]:
        """Write summary.json, the plot and the visualisations; log the
        table and the checks.

        Args:
            logger (MMLogger): The demo's logger.

        Returns:
            dict: The summary.
        """
        summary = self.summary()
        summary_file = osp.join(self.work_dir, 'summary.json')
        atomic_write_json(summary, summary_file)
        plot_file = osp.join(self.work_dir, 'pq_vs_gflops.png')
        self.plot(summary, plot_file)
        images = self.visualise(osp.join(self.work_dir, 'visualisations'))
        shares = ', '.join(f'exit {k}: {share:.0%}' for k, share in sorted(
            self.gated['histogram'].items(), key=lambda kv: int(kv[0])))
        lines = [
            '==== Results on the synthetic val split '
            f'({self.settings.num_val} images) ====', '',
            self.table(summary), '',
            'GFLOPs per image in the papers\' convention (fvcore, deformable '
            'sampling excluded); latency: median CPU time of the network '
            'relative to the baseline, measured interleaved in one process '
            '(gated: expectation over its exits).',
            f'Gate exits on val: {shares}.', ''
        ]
        lines += [
            f"[{'ok' if ok else 'NOT MET'}] {text}"
            for text, ok in self.checks(summary)
        ]
        lines += [
            '', f'summary: {summary_file}', f'plot:    {plot_file}',
            f"visualisations: {len(images)} images in "
            f"{osp.join(self.work_dir, 'visualisations')}"
        ]
        logger.info('\n'.join(lines))
        return summary
