"""GFLOPs of an early-exit model at every exit and of its exit gate.

The expected cost of a gated model is ``sum_k share_k * G_k + G_gate``: the
share of images the gate sends to exit ``k`` times the model's GFLOPs at
that exit, plus the gate itself (the 1x1 projection of the 1/32 features,
its pooling and the gate head). All counts use the analysis package's
counter (papers' convention, deformable sampling excluded), per image at its
own size, averaged over images.
"""
from itertools import islice
from typing import Dict, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from . import MaskFormerFlopAnalyzer, average_flops
from .flop_count import GIGA
from .model_utils import split_batch
from ..models.detectors.gated_inference import GATE_EXIT
from ..models.gates import ExitGate


def count_exit_flops(model: nn.Module, dataloader: Iterable,
                     exits: Sequence[int],
                     num_images: int) -> Dict[int, Dict[str, float]]:
    """FLOP counts of an ``EcoMask2Former`` at every exit.

    Each exit is counted with ``test_cfg.exit_layer`` set to it (restored
    afterwards), so the count follows the model's inference path whatever
    exit its config fixes.

    Args:
        model (nn.Module): An ``EcoMask2Former`` without gated inference
            (``test_cfg.exit_layer`` is not ``'gate'``).
        dataloader (Iterable): Yields data batches (any batch size).
        exits (Sequence[int]): Exits to count.
        num_images (int): Images to average over.

    Returns:
        dict[int, dict[str, float]]: Exit -> the per-image averages of
        ``average_flops`` (``total``, ``encoder``, ... GFLOPs, ``params``).
    """
    if model.test_exit_layer == GATE_EXIT:
        raise ValueError('count the exits of the parent model, not of its '
                         "gated version (test_cfg.exit_layer='gate')")
    previous = model.test_exit_layer
    flops = {}
    try:
        for exit_layer in exits:
            model.check_exits([exit_layer], 'exits')
            model.test_cfg['exit_layer'] = exit_layer
            flops[exit_layer] = average_flops(model, dataloader, num_images)
    finally:
        model.test_cfg['exit_layer'] = previous
    return flops


def count_exit_gflops(model: nn.Module, dataloader: Iterable,
                      exits: Sequence[int],
                      num_images: int) -> Dict[int, float]:
    """Mean total GFLOPs of an ``EcoMask2Former`` at every exit.

    Args:
        model (nn.Module): See :func:`count_exit_flops`.
        dataloader (Iterable): Yields data batches (any batch size).
        exits (Sequence[int]): Exits to count.
        num_images (int): Images to average over.

    Returns:
        dict[int, float]: Exit -> total GFLOPs per image.
    """
    return {
        exit_layer: flops['total']
        for exit_layer, flops in count_exit_flops(model, dataloader, exits,
                                                  num_images).items()
    }


class _GateForward(nn.Module):
    """The gate's path from backbone features to logits, for tracing."""

    def __init__(self, pixel_decoder: nn.Module, gate: ExitGate) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.gate = gate

    def forward(self, *feats: Tensor) -> Tensor:
        return self.gate(self.pixel_decoder.gate_features(list(feats)))


@torch.no_grad()
def count_gate_gflops(model: nn.Module, gate: ExitGate, dataloader: Iterable,
                      num_images: int) -> float:
    """Mean GFLOPs per image of running an exit gate.

    Args:
        model (nn.Module): The ``EcoMask2Former`` (gives the backbone
            features and the pixel decoder's gate input).
        gate (ExitGate): The gate (its cost does not depend on its weights).
        dataloader (Iterable): Yields data batches (any batch size).
        num_images (int): Images to average over.

    Returns:
        float: GFLOPs of ``gate_features`` and the gate, per image.
    """
    images = (
        image_batch for data_batch in dataloader
        for image_batch in split_batch(data_batch))
    counts = []
    gate_forward = _GateForward(model.panoptic_head.pixel_decoder, gate).eval()
    for image_batch in islice(images, num_images):
        data = model.data_preprocessor(image_batch, False)
        feats = tuple(model.extract_feat(data['inputs']))
        counts.append(
            MaskFormerFlopAnalyzer(gate_forward, feats).papers_total() / GIGA)
    if not counts:
        raise ValueError('the dataloader yielded no images')
    return sum(counts) / len(counts)


def expected_gflops(exit_counts: Mapping[int, int],
                    exit_gflops: Mapping[int, float],
                    gate_gflops: float = 0.0) -> float:
    """Expected GFLOPs per image of an exit policy.

    Args:
        exit_counts (Mapping[int, int]): Images the policy sent to each exit.
        exit_gflops (Mapping[int, float]): GFLOPs per image at each exit.
        gate_gflops (float): Per-image overhead of the policy (the gate).

    Returns:
        float: ``sum_k share_k * G_k + gate_gflops``.
    """
    total = sum(exit_counts.values())
    if total == 0:
        raise ValueError('the policy saw no images')
    return sum(count * exit_gflops[k]
               for k, count in exit_counts.items()) / total + gate_gflops
