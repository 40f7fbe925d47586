# Copyright (c) The proscale Authors. All rights reserved.
"""Tables and plots of a beta sweep: quality vs. compute of exit policies.

``tools/eco/sweep_beta.py`` trains one gate per beta, evaluates every gate,
every fixed exit and the per-image oracle on the test set in one pass
(``ExitPolicyTestLoop``) and turns the results into rows
(:func:`sweep_rows`), a text table (:func:`format_sweep`) and a PQ-vs-GFLOPs
plot (:func:`plot_sweep`). Each gate and the oracle are compared with the
fixed-exit curve at their own cost (:func:`compare_with_fixed_curve`): the
PQ a fixed depth reaches for the same GFLOPs, linearly interpolated between
the neighbouring fixed exits. For a detector the headline quality is the
box AP (``bbox_mAP``, in percent like PQ) instead of PQ; the keys
``fixed_curve_quality`` and ``quality_over_fixed`` hold the headline
quality.
"""
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..engine.loops import ORACLE, fixed_exit_policy

# Panoptic metrics reported per policy, matched against the last part of the
# evaluator's keys (e.g. 'coco_panoptic/PQ').
SWEEP_METRICS = ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st')
# Box metrics of mmdet's CocoMetric (fractions there, percent in the rows).
BOX_SWEEP_METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')
# The headline quality of a row, in order of preference.
HEADLINES = ('PQ', 'bbox_mAP')


def _panoptic_metrics(metrics: Mapping[str, float]) -> Dict[str, float]:
    """Pick :data:`SWEEP_METRICS` (or :data:`BOX_SWEEP_METRICS`, in
    percent) out of an evaluator's results."""
    by_name = {key.rsplit('/', 1)[-1]: value for key, value in metrics.items()}
    if not any(name in by_name for name in HEADLINES):
        raise ValueError('the test evaluator reports no PQ or bbox_mAP '
                         f'(metrics: {sorted(metrics)}); the sweep needs a '
                         'panoptic metric such as CocoPanopticMetric or '
                         'a box metric such as CocoMetric')
    picked = {
        name: float(by_name[name])
        for name in SWEEP_METRICS if name in by_name
    }
    picked.update({
        name: 100 * float(by_name[name])
        for name in BOX_SWEEP_METRICS if name in by_name
    })
    return picked


def headline(rows: List[dict]) -> str:
    """The headline quality key of sweep rows: 'PQ' or 'bbox_mAP'."""
    return next(key for key in HEADLINES if all(key in row for row in rows))


def sweep_rows(per_policy: Mapping[str, Mapping[str, float]],
               exit_counts: Mapping[str, Mapping[int, int]],
               exits: List[int],
               betas: Mapping[str, float],
               gflops: Optional[Mapping[str, float]] = None,
               gate_levels: Optional[Mapping[str, int]] = None,
               gate_depths: Optional[Mapping[str, int]] = None) -> List[dict]:
    """One row per exit policy: its quality and expected cost.

    Args:
        per_policy (Mapping[str, Mapping[str, float]]): Policy -> metrics
            (``split_policy_metrics`` of the loop's results).
        exit_counts (Mapping[str, Mapping[int, int]]): Policy -> images sent
            to each exit.
        exits (list[int]): The fixed exits evaluated, increasing; the last
            is the full model.
        betas (Mapping[str, float]): Gate policy name -> its beta.
        gflops (Mapping[str, float], optional): Policy -> mean GFLOPs per
            image, each image at its own size and exit (the gate's own
            cost included for gates).
        gate_levels (Mapping[str, int], optional): Gate policy name -> the
            encoder scales of its input (default 1, the authors' gate).
        gate_depths (Mapping[str, int], optional): Gate policy name -> the
            encoder layers run before its input (default 0, the authors'
            gate).

    Returns:
        list[dict]: Rows with ``policy``, ``kind`` ('fixed', 'gate' or
        'oracle', the latter when ``per_policy`` has the oracle),
        ``exit`` (fixed) or ``beta`` (gate), ``full_model``, the metrics of
        :data:`SWEEP_METRICS`, ``mean_depth``, ``exit_shares`` and, with
        ``gflops``, ``gflops``. Fixed exits come first, then the gates
        by input scales, input depth and increasing beta (with
        ``input_levels`` and ``input_depth``), then the oracle.
    """
    gate_levels = {name: (gate_levels or {}).get(name, 1) for name in betas}
    gate_depths = {name: (gate_depths or {}).get(name, 0) for name in betas}
    policies = [(fixed_exit_policy(k), 'fixed') for k in exits] + [
        (name, 'gate') for name in sorted(
            betas, key=lambda n: (gate_levels[n], gate_depths[n], betas[n]))
    ]
    if ORACLE in per_policy:
        policies.append((ORACLE, 'oracle'))
    rows = []
    for name, kind in policies:
        counts = {int(k): int(n) for k, n in exit_counts[name].items()}
        total = sum(counts.values())
        row = dict(policy=name, kind=kind)
        if kind == 'fixed':
            exit_layer = int(name[len('exit'):])
            row.update(exit=exit_layer, full_model=exit_layer == exits[-1])
        else:
            row.update(beta=betas.get(name), full_model=False)
            if kind == 'gate':
                row['input_levels'] = gate_levels[name]
                row['input_depth'] = gate_depths[name]
        row.update(_panoptic_metrics(per_policy[name]))
        row['mean_depth'] = sum(k * n for k, n in counts.items()) / total
        row['exit_shares'] = {
            k: counts.get(k, 0) / total
            for k in sorted(set(exits) | set(counts))
        }
        if gflops is not None:
            row['gflops'] = float(gflops[name])
        rows.append(row)
    compare_with_fixed_curve(rows)
    return rows


def _gate_input(row: dict) -> Tuple[int, int]:
    """``(input_levels, input_depth)`` of a gate row (rows of older sweeps
    have no ``input_depth``)."""
    return row['input_levels'], row.get('input_depth', 0)


def compare_with_fixed_curve(rows: List[dict]) -> None:
    """Compare every gate and the oracle with the fixed-exit curve.

    Adds to each gate and oracle row (in place) ``fixed_curve_quality``,
    the headline quality (PQ or box AP) of the fixed-exit curve at the row's
    GFLOPs (mean depth without GFLOPs), linearly interpolated between the
    neighbouring fixed exits and clamped to the curve's ends, and
    ``quality_over_fixed``, the row's quality minus it. With an oracle row
    whose gain is positive, each gate also gets ``oracle_gain_captured``:
    its gain over the curve as a share of the oracle's.

    Args:
        rows (list[dict]): Rows of :func:`sweep_rows`.
    """
    x_key = 'gflops' if all('gflops' in row for row in rows) else \
        'mean_depth'
    fixed = sorted((row for row in rows if row['kind'] == 'fixed'),
                   key=lambda row: row[x_key])
    xs = [row[x_key] for row in fixed]
    key = headline(rows)
    pqs = [row[key] for row in fixed]
    for row in rows:
        if row['kind'] != 'fixed':
            row['fixed_curve_quality'] = float(np.interp(row[x_key], xs, pqs))
            row['quality_over_fixed'] = row[key] - row['fixed_curve_quality']
    oracle = [row for row in rows if row['kind'] == 'oracle']
    if oracle and oracle[0]['quality_over_fixed'] > 0:
        for row in rows:
            if row['kind'] == 'gate':
                row['oracle_gain_captured'] = (row['quality_over_fixed'] /
                                               oracle[0]['quality_over_fixed'])


def format_sweep(rows: List[dict]) -> str:
    """Format sweep rows as a text table."""
    metrics = [
        m for m in SWEEP_METRICS + BOX_SWEEP_METRICS
        if all(m in row for row in rows)
    ]
    header = ['policy', 'beta'] + metrics + ['vs fixed', 'depth']
    with_gflops = all('gflops' in row for row in rows)
    if with_gflops:
        header.append('GFLOPs')
    header.append('exit shares')
    lines = [header]
    for row in rows:
        name = row['policy'] + (' (full)' if row['full_model'] else '')
        beta = row.get('beta')
        line = [name, '-' if beta is None else f'{beta:g}']
        line += [f'{row[m]:.2f}' for m in metrics]
        line.append(f"{row['quality_over_fixed']:+.2f}"
                    if 'quality_over_fixed' in row else '-')
        line.append(f"{row['mean_depth']:.2f}")
        if with_gflops:
            line.append(f"{row['gflops']:.3f}")
        line.append(' '.join(f'{k}:{share:.0%}'
                             for k, share in row['exit_shares'].items()))
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return '\n'.join('  '.join(
        cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)


def plot_sweep(rows: List[dict], path: str, title: str = '') -> None:
    """Plot PQ (or box AP) against GFLOPs per image (or mean depth) of
    every policy.

    Fixed exits form one line (the deepest marked as the full model), each
    gate is a labelled point and the per-image oracle a diamond.

    Args:
        rows (list[dict]): Output of :func:`sweep_rows`.
        path (str): Output image (PNG).
        title (str): Plot title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    x_key = 'gflops' if all('gflops' in row for row in rows) else \
        'mean_depth'
    key = headline(rows)
    fixed = [row for row in rows if row['kind'] == 'fixed']
    gates = [row for row in rows if row['kind'] == 'gate']
    oracle = [row for row in rows if row['kind'] == 'oracle']
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    axes.plot([row[x_key] for row in fixed], [row[key] for row in fixed],
              'o-',
              color='tab:blue',
              label='fixed exit')
    for row in fixed:
        axes.annotate(
            f"{row['exit']}", (row[x_key], row[key]),
            textcoords='offset points',
            xytext=(0, -12),
            ha='center',
            fontsize=8)
    full = [row for row in fixed if row['full_model']]
    axes.plot([row[x_key] for row in full], [row[key] for row in full],
              '*',
              color='black',
              markersize=14,
              label='full model')
    colors = iter(('tab:red', 'tab:purple', 'tab:orange', 'tab:brown'))
    for levels, depth in sorted({_gate_input(row) for row in gates}):
        same = [row for row in gates if _gate_input(row) == (levels, depth)]
        label = 'gated (ECO-M2F, coarsest-scale input)' if levels == 1 \
            else f'gated, {levels}-scale input'
        if depth:
            label += f' after {depth} layer(s)'
        axes.plot([row[x_key] for row in same], [row[key] for row in same],
                  's',
                  color=next(colors, 'tab:gray'),
                  label=label)
    for i, row in enumerate(gates):
        # alternate above and below: neighbouring betas often lie close
        scales = '' if row['input_levels'] == 1 else \
            f", {row['input_levels']} scales"
        if row.get('input_depth'):
            scales += f", layer {row['input_depth']}"
        axes.annotate(
            f"β={row['beta']:g}{scales}", (row[x_key], row[key]),
            textcoords='offset points',
            xytext=(4, 5 if i % 2 == 0 else -11),
            fontsize=8)
    axes.plot([row[x_key] for row in oracle], [row[key] for row in oracle],
              'D',
              color='tab:green',
              markersize=8,
              label='per-image oracle')
    axes.set_xlabel('GFLOPs per image' if x_key ==
                    'gflops' else 'mean encoder layers')
    axes.set_ylabel('box AP' if key == 'bbox_mAP' else key)
    axes.grid(True, alpha=0.3)
    axes.legend(loc='best')
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
