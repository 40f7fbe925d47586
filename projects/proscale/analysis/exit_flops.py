# Copyright (c) The proscale Authors. All rights reserved.
"""GFLOPs of an early-exit model at every exit and of its exit gate.

The cost of a gated model is averaged per image, each image counted at its
own size and its own exit, plus the gate itself (:class:`ImageGFlops`). The
gate reuses the encoder's projection of the 1/32 features and pooling counts
no FLOPs, so the gate's own cost is its head (:func:`count_gate_gflops`).
All counts use the analysis package's counter (papers' convention,
deformable sampling excluded).
"""
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import MaskFormerFlopAnalyzer, average_flops
from .flop_count import GIGA, DataBatch
from .model_utils import fixed_shape_batch
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


def gated_path_key(
    model: nn.Module
) -> Optional[Callable[[DataBatch], Tuple[Tuple[int, int], int]]]:
    """What decides a gated model's FLOPs on an image, for
    :func:`~.flop_count.average_flops`'s ``path_key``.

    A gated model's count of an image depends on the image's input size and
    on the exit its gate picks, not otherwise on its content (as
    :class:`ImageGFlops` assumes); the key runs the backbone and the gate
    alone, far cheaper than tracing the model, so an average over many
    images traces one image per size and exit.

    Args:
        model (nn.Module): An early-exit model (``EcoMask2Former``,
            ``EcoDINO``) in eval mode.

    Returns:
        Callable | None: Maps a one-image batch to ``((h, w), exit)``; None
        when the model does not run gated inference
        (``test_cfg.exit_layer`` is not ``'gate'``), whose counts need no
        key.
    """
    if getattr(model, 'test_exit_layer', None) != GATE_EXIT:
        return None

    @torch.no_grad()
    def path_key(image_batch: DataBatch) -> Tuple[Tuple[int, int], int]:
        data = model.data_preprocessor(image_batch, False)
        feats = model.extract_feat(data['inputs'])
        exits, _ = model.gate_exits(feats, data['data_samples'])
        return tuple(data['inputs'].shape[-2:]), int(exits[0])

    return path_key


@torch.no_grad()
def count_gate_gflops(gate: ExitGate) -> float:
    """GFLOPs per image of an exit gate's own computation.

    The gate's input, the projected 1/32 features, is the encoder's first
    step and is computed once for both; averaging it over the image counts
    no FLOPs (papers' convention), so the gate costs its head alone, the
    same for every image size.

    Args:
        gate (ExitGate): The gate (its cost does not depend on its weights).

    Returns:
        float: GFLOPs of the gate head per image.
    """
    pooled = torch.zeros(1, gate.in_channels)
    return MaskFormerFlopAnalyzer(gate.eval(),
                                  (pooled, )).papers_total() / GIGA


class ImageGFlops:
    """GFLOPs of an early-exit model per image, at its own size and exit.

    Counts are cached per ``(input size, exit)``: images of one size share
    them, so a policy's per-image average costs one count per size and exit
    it uses.

    Args:
        model (nn.Module): An ``EcoMask2Former`` (see
            :func:`count_exit_flops`).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._cache: Dict[Tuple[Tuple[int, int], int], float] = {}

    def __call__(self, size: Tuple[int, int], exit_layer: int) -> float:
        """Total GFLOPs of one image of ``size`` (its padded input size)
        at ``exit_layer``."""
        key = (tuple(size), int(exit_layer))
        if key not in self._cache:
            batch = fixed_shape_batch(self.model, key[0])
            self._cache[key] = count_exit_gflops(self.model, [batch],
                                                 [key[1]], 1)[key[1]]
        return self._cache[key]

    def mean(self,
             image_exits: Sequence[Tuple[Tuple[int, int], int]],
             overhead: float = 0.0) -> float:
        """Mean GFLOPs per image of a policy.

        Args:
            image_exits (Sequence[tuple]): ``((h, w), exit)`` of every
                image: its input size alone and the exit the policy picked.
            overhead (float): Per-image GFLOPs added (the gate's own cost).

        Returns:
            float: ``mean_i G(size_i, exit_i) + overhead``.
        """
        if not image_exits:
            raise ValueError('the policy saw no images')
        return sum(self(size, k)
                   for size, k in image_exits) / len(image_exits) + overhead

    def per_exit(self, sizes: List[Tuple[int, int]],
                 exits: Sequence[int]) -> Dict[int, float]:
        """Mean GFLOPs per image at every exit over images of ``sizes``."""
        return {k: self.mean([(size, k) for size in sizes]) for k in exits}
