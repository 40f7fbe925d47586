# Copyright (c) The proscale Authors. All rights reserved.
"""How well an exit gate picks the exits (ECO-M2F step C)."""
from typing import Dict, List, Optional, Sequence

import torch
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from torch import Tensor

from ...models.gates import hard_exit_targets


def exit_choice_figures(choice: Tensor,
                        quality: Tensor,
                        utility: Tensor,
                        exits: Sequence[int],
                        exit_gflops: Optional[Sequence[float]] = None) -> dict:
    """Figures of a gate's exit choices against the utility's targets.

    Args:
        choice (Tensor): The gate's exit index per image, shape (N, ).
        quality (Tensor): Per-image quality at every exit, shape (N, E).
        utility (Tensor): Per-image utility of every exit, shape (N, E).
        exits (Sequence[int]): The exits (encoder layers), length E.
        exit_gflops (Sequence[float], optional): Model GFLOPs per exit.

    Returns:
        dict: ``num_images``; ``accuracy`` (share of images sent to their
        target exit); ``histogram`` (exit -> share of images);
        ``mean_depth`` and ``target_mean_depth`` (mean encoder layers of the
        gate's and of the target choices); ``mean_quality`` and
        ``target_mean_quality`` (mean per-image quality at those exits);
        with ``exit_gflops`` also ``mean_gflops`` and ``target_mean_gflops``.
    """
    num = len(choice)
    if num == 0:
        raise ValueError('cannot evaluate a gate on zero images')
    target = hard_exit_targets(utility)
    rows = torch.arange(num)
    depth = torch.tensor(exits, dtype=torch.float64)
    counts = torch.bincount(choice, minlength=len(exits))
    figures = dict(
        num_images=num,
        accuracy=float((choice == target).double().mean()),
        histogram={
            k: float(c) / num
            for k, c in zip(exits, counts.tolist())
        },
        mean_depth=float(depth[choice].mean()),
        target_mean_depth=float(depth[target].mean()),
        mean_quality=float(quality[rows, choice].mean()),
        target_mean_quality=float(quality[rows, target].mean()))
    if exit_gflops is not None:
        gflops = torch.tensor(exit_gflops, dtype=torch.float64)
        if gflops.shape != (len(exits), ):
            raise ValueError(f'need one GFLOPs value per exit {tuple(exits)},'
                             f' got {list(exit_gflops)}')
        figures.update(
            mean_gflops=float(gflops[choice].mean()),
            target_mean_gflops=float(gflops[target].mean()))
    return figures


@METRICS.register_module()
class ExitGateMetric(BaseMetric):
    """Gate accuracy, expected depth, GFLOPs and utility of a gate.

    Consumes ``ExitGateModel``'s predictions. The target of an image is its
    exit of highest utility ``q - beta * k`` (the model's beta); the exits
    come from the dataset's ``metainfo``.

    Args:
        exit_gflops (Sequence[float], optional): Model GFLOPs at every exit
            (the gate's own cost included if it should count); with them
            the expected GFLOPs are reported. Defaults to None.
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            'gate'.
    """

    default_prefix = 'gate'

    def __init__(self,
                 exit_gflops: Optional[Sequence[float]] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.exit_gflops = None if exit_gflops is None else list(exit_gflops)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep the batch's choices, quality and utility.

        Args:
            data_batch (dict): The batch (unused).
            data_samples (Sequence[dict]): ``ExitGateModel``'s predictions.
        """
        for batch in data_samples:
            self.results.append(
                {k: batch[k].cpu()
                 for k in ('choice', 'quality', 'utility')})

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Compute the figures over every image.

        Args:
            results (list[dict]): The kept batches.

        Returns:
            dict: ``accuracy``, ``mean_depth``, ``target_mean_depth``,
            ``mean_quality``, ``target_mean_quality``, ``mean_utility``,
            ``target_mean_utility``, ``exit<k>`` (share of images at exit k)
            and, with ``exit_gflops``, ``mean_gflops`` and
            ``target_mean_gflops``.
        """
        choice, quality, utility = (
            torch.cat([r[k] for r in results])
            for k in ('choice', 'quality', 'utility'))
        exits = tuple(self.dataset_meta['exits'])
        figures = exit_choice_figures(choice, quality, utility, exits,
                                      self.exit_gflops)
        rows = torch.arange(len(choice))
        figures.pop('num_images')
        for k, share in figures.pop('histogram').items():
            figures[f'exit{k}'] = share
        figures['mean_utility'] = float(utility[rows, choice].mean())
        figures['target_mean_utility'] = float(
            utility.max(dim=1).values.mean())
        return figures
