"""GFLOPs of an early-exit model at every exit and of its exit gate.

The expected cost of a gated model is ``sum_k share_k * G_k + G_gate``: the
share of images the gate sends to exit ``k`` times the model's GFLOPs at
that exit, plus the gate itself (the 1x1 projection of the 1/32 features,
its pooling and the gate head). All counts use the analysis package's
counter (papers' convention, deformable sampling excluded).
"""
from typing import Dict, Iterable, List, Sequence

import torch
from torch import Tensor, nn

from ..analysis import MaskFormerFlopAnalyzer, count_flops
from ..analysis.flop_count import GIGA
from ..models.gates import ExitGate


def count_exit_gflops(model: nn.Module, data_batches: Iterable[dict],
                      exits: Sequence[int]) -> Dict[int, float]:
    """Mean total GFLOPs of an ``EcoMask2Former`` at every exit.

    Args:
        model (nn.Module): An ``EcoMask2Former`` without gated inference
            (``test_cfg.exit_layer`` is not ``'gate'``).
        data_batches (Iterable[dict]): Data batches (``inputs`` and
            ``data_samples``), e.g. one-image batches of test images.
        exits (Sequence[int]): Exits to count.

    Returns:
        dict[int, float]: Exit -> total GFLOPs averaged over the batches.
    """
    if model.test_exit_layer == 'gate':
        raise ValueError('count the exits of the parent model, not of its '
                         "gated version (test_cfg.exit_layer='gate')")
    batches: List[dict] = list(data_batches)
    if not batches:
        raise ValueError('need at least one data batch to count GFLOPs')
    previous = model.panoptic_head.pixel_decoder.exit_layer
    gflops = {}
    try:
        for exit_layer in exits:
            model.set_exit(exit_layer)
            gflops[exit_layer] = sum(
                count_flops(model, batch)['total']
                for batch in batches) / len(batches)
    finally:
        model.set_exit(previous)
    return gflops


class _GateForward(nn.Module):
    """The gate's path from backbone features to logits, for tracing."""

    def __init__(self, pixel_decoder: nn.Module, gate: ExitGate) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.gate = gate

    def forward(self, *feats: Tensor) -> Tensor:
        return self.gate(self.pixel_decoder.gate_features(list(feats)))


@torch.no_grad()
def count_gate_gflops(model: nn.Module, gate: ExitGate,
                      data_batch: dict) -> float:
    """GFLOPs of running an exit gate on one data batch (a one-image batch
    gives the per-image overhead of gated inference).

    Args:
        model (nn.Module): The ``EcoMask2Former`` (gives the backbone
            features and the pixel decoder's gate input).
        gate (ExitGate): The gate.
        data_batch (dict): ``inputs`` and ``data_samples``.

    Returns:
        float: GFLOPs of ``gate_features`` and the gate.
    """
    data = model.data_preprocessor(data_batch, False)
    feats = tuple(model.extract_feat(data['inputs']))
    analyzer = MaskFormerFlopAnalyzer(
        _GateForward(model.panoptic_head.pixel_decoder, gate).eval(), feats)
    return analyzer.papers_total() / GIGA
