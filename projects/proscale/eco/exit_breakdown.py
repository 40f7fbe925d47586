# Copyright (c) The proscale Authors. All rights reserved.
"""Per-exit quality and exit choices broken down by groups of images.

ECO-M2F's gate pays off where images differ in the depth they need. Given
a derived exit dataset (``tools/eco/derive_exit_dataset.py``) and a label
per image (e.g. the synthetic dataset's context images against its plain
ones, read from a field of the annotation file's ``images`` with
:func:`image_labels`), :func:`exit_breakdown` reports per group the mean
per-image quality at every exit and, for the per-image oracle and for every
gate, the histogram of chosen exits, the mean depth and the mean per-image
quality at the chosen exits.
"""
import json
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from ..models.gates import ExitGate, exit_utility, hard_exit_targets
from .exit_samples import ExitSamples

ALL_IMAGES = 'all'
ORACLE = 'oracle'


def image_labels(ann_file: str, key: str,
                 image_ids: Sequence[int]) -> np.ndarray:
    """Read each image's value of a field of a COCO annotation file.

    Args:
        ann_file (str): COCO-style annotation file (its ``images`` list).
        key (str): The field of the ``images`` entries, e.g. ``'context'``.
        image_ids (Sequence[int]): The images to label, shape (N, ).

    Returns:
        np.ndarray: Labels ``'<key>=<value>'`` (e.g. ``'context=True'``),
        shape (N, ), dtype object.

    Raises:
        ValueError: If the file cannot be read, or an image is missing from
            it or has no field ``key``.
    """
    try:
        with open(ann_file) as f:
            infos = json.load(f)['images']
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f'cannot read the images of annotation file '
                         f'{ann_file}: {error!r}') from error
    by_id = {info.get('id'): info for info in infos}
    labels = []
    for image_id in image_ids:
        info = by_id.get(int(image_id))
        if info is None:
            raise ValueError(f'{ann_file}: no image with id {image_id}')
        if key not in info:
            raise ValueError(f'{ann_file}: image {image_id} has no field '
                             f'{key!r} to group by')
        labels.append(f'{key}={info[key]}')
    return np.array(labels, dtype=object)


@torch.no_grad()
def gate_choices(gate: ExitGate, samples: ExitSamples) -> np.ndarray:
    """The exit index a gate picks for every image of ``samples``.

    Args:
        gate (ExitGate): The gate; its exits must be the samples'.
        samples (ExitSamples): The images, with the gate's input.

    Returns:
        np.ndarray: Indices into ``samples.exits``, shape (N, ).
    """
    if tuple(gate.exits) != samples.exits:
        raise ValueError(f'the gate chooses among exits {gate.exits} but '
                         f'the samples have exits {samples.exits}')
    return gate.eval()(samples.gate_inputs).argmax(dim=1).numpy()


def _policy_summary(quality: np.ndarray, exits: np.ndarray,
                    choice: np.ndarray) -> dict:
    """Histogram, mean depth and mean quality of per-image exit choices."""
    counts = np.bincount(choice, minlength=len(exits))
    return dict(
        histogram={
            int(k): float(c) / len(choice)
            for k, c in zip(exits, counts)
        },
        mean_depth=float(exits[choice].mean()),
        mean_quality=float(quality[np.arange(len(choice)), choice].mean()))


def exit_breakdown(
        samples: ExitSamples,
        labels: Sequence[str],
        choices: Optional[Mapping[str, np.ndarray]] = None) -> dict:
    """Break per-exit quality and exit choices down by image groups.

    The per-image oracle (each image at the exit of its best quality, ties
    to the shallowest) is always included as policy ``'oracle'``.

    Args:
        samples (ExitSamples): Per-exit quality of N images.
        labels (Sequence[str]): Group of every image, shape (N, ).
        choices (Mapping[str, np.ndarray], optional): Policy name -> exit
            index chosen for every image (e.g. :func:`gate_choices`), each
            shape (N, ).

    Returns:
        dict: ``exits`` and ``groups``: for ``'all'`` and every label (in
        sorted order), ``num_images``, ``mean_quality`` (one value per
        exit) and ``policies`` (name -> ``histogram`` (exit -> share of
        the group's images), ``mean_depth``, ``mean_quality``).
    """
    labels = np.asarray(labels, dtype=object)
    if labels.shape != (len(samples), ):
        raise ValueError(f'need one label per image ({len(samples)}), got '
                         f'shape {labels.shape}')
    quality = samples.quality.numpy()
    exits = np.asarray(samples.exits)
    oracle = hard_exit_targets(
        exit_utility(samples.quality, samples.exits, 0.0)).numpy()
    policies = {ORACLE: oracle}
    for name, choice in (choices or {}).items():
        choice = np.asarray(choice)
        valid = (choice >= 0) & (choice < len(exits))
        if choice.shape != (len(samples), ) or not valid.all():
            raise ValueError(f'policy {name!r}: need one exit index in '
                             f'[0, {len(exits)}) per image')
        policies[name] = choice
    groups = {}
    for group in [ALL_IMAGES] + sorted(set(labels)):
        mask = np.ones(len(labels), bool) if group == ALL_IMAGES else (
            labels == group)
        groups[group] = dict(
            num_images=int(mask.sum()),
            mean_quality=quality[mask].mean(axis=0).tolist(),
            policies={
                name: _policy_summary(quality[mask], exits, choice[mask])
                for name, choice in policies.items()
            })
    return dict(exits=exits.tolist(), groups=groups)


def format_exit_breakdown(breakdown: dict, quality_name: str = 'PQ') -> str:
    """Format :func:`exit_breakdown` as text tables (qualities in percent).

    Args:
        breakdown (dict): Output of :func:`exit_breakdown`.
        quality_name (str): What the quality is, for the headers.

    Returns:
        str: One table of the mean per-image quality per exit and group,
        then per policy one table of exit shares, mean depth and quality.
    """
    exits = breakdown['exits']
    groups = breakdown['groups']
    width = max(len(name) for name in groups) + 2
    exit_header = ''.join(f'{f"exit {k}":>9}' for k in exits)
    lines = [
        f'Mean per-image {quality_name} (%) at every exit',
        f'{"group":<{width}}{"images":>7}{exit_header}'
    ]
    for name, group in groups.items():
        values = ''.join(f'{100 * q:9.2f}' for q in group['mean_quality'])
        lines.append(f'{name:<{width}}{group["num_images"]:>7}{values}')
    quality_width = max(8, len(quality_name) + 2)
    for policy in next(iter(groups.values()))['policies']:
        lines += [
            '', f'{policy}: share of images per exit, mean depth, mean '
            f'per-image {quality_name} (%)',
            f'{"group":<{width}}{exit_header}{"depth":>8}'
            f'{quality_name:>{quality_width}}'
        ]
        for name, group in groups.items():
            summary = group['policies'][policy]
            shares = ''.join(f'{share:9.1%}'
                             for share in summary['histogram'].values())
            lines.append(
                f'{name:<{width}}{shares}{summary["mean_depth"]:8.2f}'
                f'{100 * summary["mean_quality"]:{quality_width}.2f}')
    return '\n'.join(lines)
