# Copyright (c) The proscale Authors. All rights reserved.
"""Gated inference of ECO-M2F (step C): a gate picks each image's exit.

:class:`GatedInferenceMixin` gives an early-exit detector (``EcoMask2Former``,
``EcoDINO``) its gated path, used when ``test_cfg.exit_layer='gate'``:
backbone, the exit gate on each image's pooled coarsest projected encoder
input (averaged over the image's own area; the detector's
:meth:`~GatedInferenceMixin.gate_inputs_and_reuse`), then encoder,
decoder and post-processing per exit, reusing what the gate input
computed (for ``EcoMask2Former`` the pixel decoder's input projection). A
gate with ``input_depth`` = d > 0 reads the tokens after the first ``d``
encoder layers, which run on the whole group before the gate; every exit
then resumes from them, so they run once per image as at a fixed exit
(``EcoMask2Former`` only).

Each image runs exactly as it would alone. Images of different sizes are
split first: each group of equal size runs from the batch tensor cropped to
the size the data preprocessor gives that image alone (its size padded to
``pad_size_divisor``), because padding an image further changes the
backbone's features near its border (the convolutions see the padding) and
so its gate input and its predictions. Within a group, images are grouped
by exit: the images the gate sends to exit ``k`` run the encoder for ``k``
layers, together, and are decoded together. Running the whole batch to its
deepest exit instead would charge every image of a batch the depth of its
hardest image; grouping spends exactly the per-image cost the gate chose
(what the FLOP counter's per-image average reports) for at most one encoder
and decoder call per exit and size. Every operation after the backbone
treats the images of a batch independently, so a batch gives the exits and
results of its images run one by one (tested with mixed sizes).
"""
import math
from abc import ABCMeta, abstractmethod
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import OptConfigType
from torch import Tensor

from ..gates import ExitGate

# ``test_cfg.exit_layer`` value that turns gated inference on.
GATE_EXIT = 'gate'


def _scatter(outputs: Any, group_outputs: Any, index: Tensor,
             batch_size: int, batch_dim: int = 0) -> Any:
    """Write a group's nested tensor outputs into the batch's outputs.

    Args:
        outputs (Any): Batch outputs so far (tensors with the batch along
            ``batch_dim``, nested in tuples and lists), or None to allocate
            them.
        group_outputs (Any): The group's outputs, the same nesting.
        index (Tensor): Batch positions of the group's images.
        batch_size (int): Images in the batch.
        batch_dim (int): The batch dimension of the tensors. Defaults to 0.

    Returns:
        Any: The batch outputs with the group's rows filled in.
    """
    if isinstance(group_outputs, Tensor):
        if outputs is None:
            shape = list(group_outputs.shape)
            shape[batch_dim] = batch_size
            outputs = group_outputs.new_empty(shape)
        return outputs.index_copy_(batch_dim, index, group_outputs)
    if outputs is None:
        outputs = [None] * len(group_outputs)
    return type(group_outputs)(
        _scatter(out, group_out, index, batch_size, batch_dim)
        for out, group_out in zip(outputs, group_outputs))


def take_rows(value: Any, index: Tensor) -> Any:
    """The rows ``index`` of every tensor in a nest of tuples, lists and
    dicts (the batch first); other leaves (ints, None) as they are."""
    if isinstance(value, Tensor):
        return value[index]
    if isinstance(value, dict):
        return {key: take_rows(item, index) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(take_rows(item, index) for item in value)
    return value


def valid_shapes(data_samples: SampleList) -> Tensor:
    """Each image's unpadded input size, the region its gate input pools.

    Args:
        data_samples (list[:obj:`DetDataSample`]): Data samples with
            ``img_shape`` in their metainfo.

    Returns:
        Tensor: ``(h, w)`` of every image, shape (B, 2), int64.
    """
    return torch.tensor([sample.img_shape[:2] for sample in data_samples],
                        dtype=torch.long).view(-1, 2)


class GatedInferenceMixin(metaclass=ABCMeta):
    """Gated inference for an early-exit detector.

    The host class calls :meth:`build_gate` in its constructor and, when
    ``test_cfg.exit_layer == 'gate'``, routes ``predict`` to
    :meth:`predict_gated` and the tensor forward (``mode='tensor'``, traced
    by the FLOP counter) to :meth:`forward_gated`. The chosen exit of every
    image is written to its data sample's metainfo as ``exit_layer``.

    The host implements the model-specific parts: :meth:`gate_input`,
    :meth:`gate_inputs_and_reuse`, :meth:`forward_exit_by_feat` and
    :attr:`gate_input_levels`, sets :attr:`gate_input_depths` and
    :attr:`gate_input_info`, and its ``predict_exits_by_feat`` takes the
    reused state as keyword arguments.
    """

    gate: Optional[ExitGate]
    # batch dimension of the tensor forward's outputs
    gated_output_batch_dim = 0
    # encoder depths a gate input can be read after (0: projected inputs)
    gate_input_depths: Tuple[int, ...] = (0, )
    # what the gate input is, for the derived dataset's meta
    gate_input_info: str

    @property
    @abstractmethod
    def gate_input_levels(self) -> int:
        """int: The encoder scales a gate input can pool (its largest
        ``num_levels``)."""

    def build_gate(self, gate: OptConfigType) -> None:
        """Build the exit gate and check it against the model's exits.

        Args:
            gate (:obj:`ConfigDict` or dict, optional): The gate config,
                e.g. ``dict(type='ExitGate', exits=(2, 3, 4, 5, 6),
                in_channels=256)``; None for no gate.
        """
        self.gate = MODELS.build(gate) if gate is not None else None
        if self.gate is not None:
            self.check_exits(self.gate.exits, 'gate.exits')
        if self.test_exit_layer == GATE_EXIT and self.gate is None:
            raise ValueError(
                f"test_cfg.exit_layer='{GATE_EXIT}' needs a gate: set "
                "model.gate=dict(type='ExitGate', ...)")

    @abstractmethod
    def gate_input(self,
                   feats: Sequence[Tensor],
                   data_samples: Optional[SampleList] = None,
                   projected: Optional[List[Tensor]] = None,
                   num_levels: int = 1,
                   encoded: Optional[Tensor] = None) -> Tensor:
        """The gate input of every image: its projected coarsest encoder
        scale (and with ``num_levels`` > 1 finer ones), or its tokens after
        the first encoder layers, averaged over its own area.

        Args:
            feats (Sequence[Tensor]): Backbone (and neck) features, each of
                shape (B, C_i, H_i, W_i).
            data_samples (list[:obj:`DetDataSample`], optional): The images'
                data samples; the average covers each image's own area.
                None averages the whole (padded) map.
            projected (list[Tensor], optional): The projected encoder
                inputs when the caller has them.
            num_levels (int): Encoder scales pooled, coarse to fine.
                Defaults to 1.
            encoded (Tensor, optional): Encoder tokens after its first
                layers, shape (B, N, C), pooled instead of the projected
                features.

        Returns:
            Tensor: Pooled features, shape (B, num_levels * C).
        """

    @abstractmethod
    def gate_inputs_and_reuse(
        self,
        feats: Sequence[Tensor],
        data_samples: Optional[SampleList] = None,
        num_levels: int = 1,
        depths: Sequence[int] = (0, ),
        exits: Optional[Sequence[int]] = None
    ) -> Tuple[Dict[int, Tensor], Dict[str, Any]]:
        """The gate inputs read after several encoder depths, and what
        computing them ran, for the exits to reuse.

        Args:
            feats (Sequence[Tensor]): Backbone (and neck) features, each of
                shape (B, C_i, H_i, W_i).
            data_samples (list[:obj:`DetDataSample`], optional): The images'
                data samples (see :meth:`gate_input`).
            num_levels (int): Encoder scales pooled. Defaults to 1.
            depths (Sequence[int]): Encoder layers run before pooling (0:
                the projected inputs). Defaults to (0, ).
            exits (Sequence[int], optional): The exits that will be decoded
                with the returned state; encoder layers it holds are not
                run again when every exit is at least that deep. None
                reuses no encoder layer.

        Returns:
            tuple[dict[int, Tensor], dict]: Depth -> gate inputs
            (B, num_levels * C); the keyword arguments of
            ``predict_exits_by_feat`` (and :meth:`forward_exit_by_feat`)
            that reuse the state (tensors with the batch first).
        """

    @abstractmethod
    def forward_exit_by_feat(self, feats: Sequence[Tensor],
                             data_samples: Optional[SampleList],
                             exit_layer: int, **reuse: Any) -> Any:
        """The head's outputs as in ``mode='tensor'`` at one exit.

        Args:
            feats (Sequence[Tensor]): Backbone (and neck) features, each of
                shape (B, C_i, H_i, W_i).
            data_samples (list[:obj:`DetDataSample`], optional): The batch
                data samples.
            exit_layer (int): The exit.
            **reuse: State from :meth:`gate_inputs_and_reuse`.

        Returns:
            Any: Nested tensors, the batch along
            :attr:`gated_output_batch_dim`.
        """

    def gate_exits(
        self,
        feats: Sequence[Tensor],
        data_samples: Optional[SampleList] = None
    ) -> Tuple[Tensor, Dict[str, Any]]:
        """Let the gate pick every image's exit.

        Args:
            feats (Sequence[Tensor]): Backbone (and neck) features, each of
                shape (B, C_i, H_i, W_i).
            data_samples (list[:obj:`DetDataSample`], optional): The images'
                data samples (see :meth:`gate_input`).

        Returns:
            tuple[Tensor, dict]: The chosen exits (numbers of encoder
            layers), shape (B, ), int64, and the state the exits reuse
            (:meth:`gate_inputs_and_reuse`).
        """
        if self.gate is None:
            raise ValueError('this model has no gate (model.gate is None)')
        if not bool(self.gate.trained):
            raise RuntimeError(
                'the exit gate has no trained weights: load a checkpoint '
                'with the gate merged in (tools/eco/merge_gate.py PARENT '
                'GATE.pth --out MERGED.pth)')
        depth = self.gate.input_depth
        inputs, reuse = self.gate_inputs_and_reuse(feats, data_samples,
                                                   self.gate.input_levels,
                                                   (depth, ), self.gate.exits)
        return self.gate.predict(inputs[depth]), reuse

    def own_size_groups(
            self, batch_inputs: Tensor,
            batch_data_samples: SampleList) -> List[Tuple[Tensor, Tensor]]:
        """Split a batch into groups of images of equal size alone.

        An image alone is padded by the data preprocessor to its size
        rounded up to ``pad_size_divisor``; a batch pads it to the largest
        image. The group's data samples get the ``batch_input_shape`` and
        ``pad_shape`` they have alone.

        Args:
            batch_inputs (Tensor): Input images of shape (B, C, H, W).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples, with ``img_shape``.

        Returns:
            list[tuple[Tensor, Tensor]]: ``(inputs, batch positions)`` per
            size: the batch tensor of the group's images cropped to their
            size alone (the batch tensor itself when it is one group).
        """
        divisor = getattr(self.data_preprocessor, 'pad_size_divisor', 1)
        sizes = [
            tuple(
                math.ceil(side / divisor) * divisor
                for side in sample.img_shape[:2])
            for sample in batch_data_samples
        ]
        groups = []
        for size in sorted(set(sizes)):
            index = [i for i, other in enumerate(sizes) if other == size]
            for i in index:
                batch_data_samples[i].set_metainfo(
                    dict(batch_input_shape=size, pad_shape=size))
            index = torch.tensor(index, device=batch_inputs.device)
            if len(index) == len(batch_inputs) and \
                    size == tuple(batch_inputs.shape[-2:]):
                groups.append((batch_inputs, index))
            else:
                groups.append((batch_inputs[index, :, :size[0], :size[1]],
                               index))
        return groups

    @staticmethod
    def exit_groups(exits: Tensor) -> List[Tuple[int, Tensor]]:
        """Group the images of a batch by exit.

        Args:
            exits (Tensor): Every image's exit, shape (B, ).

        Returns:
            list[tuple[int, Tensor]]: ``(exit, batch positions)`` per
            distinct exit, exits increasing.
        """
        return [(exit_layer, (exits == exit_layer).nonzero(as_tuple=True)[0])
                for exit_layer in exits.unique().tolist()]

    def predict_gated(self,
                      batch_inputs: Tensor,
                      batch_data_samples: SampleList,
                      rescale: bool = True) -> SampleList:
        """Predict every image at the exit its gate picks.

        Args:
            batch_inputs (Tensor): Input images of shape (B, C, H, W).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples.
            rescale (bool): Whether to rescale the results to the original
                image size. Defaults to True.

        Returns:
            list[:obj:`DetDataSample`]: ``batch_data_samples`` with the
            predictions of the fixed-exit path at each image's exit and
            ``metainfo['exit_layer']`` set to that exit.
        """
        for inputs, size_index in self.own_size_groups(
                batch_inputs, batch_data_samples):
            samples = [batch_data_samples[i] for i in size_index.tolist()]
            feats = self.extract_feat(inputs)
            exits, reuse = self.gate_exits(feats, samples)
            for exit_layer, index in self.exit_groups(exits):
                group_samples = [samples[i] for i in index.tolist()]
                self.predict_exits_by_feat([feat[index] for feat in feats],
                                           group_samples, [exit_layer],
                                           rescale, **take_rows(reuse, index))
                for data_sample in group_samples:
                    data_sample.set_metainfo(dict(exit_layer=exit_layer))
        return batch_data_samples

    def forward_gated(
        self,
        batch_inputs: Tensor,
        batch_data_samples: Optional[SampleList] = None
    ) -> Tuple[List[Tensor]]:
        """Network forward without post-processing, each image at its gated
        exit.

        Args:
            batch_inputs (Tensor): Input images of shape (B, C, H, W).
            batch_data_samples (list[:obj:`DetDataSample`], optional): The
                batch data samples.

        Returns:
            tuple[list[Tensor]]: The head's outputs as in ``mode='tensor'``
            (:meth:`forward_exit_by_feat`), each image's rows computed at
            its exit. Unlike :meth:`predict_gated`
            the batch runs at its padded size (the outputs share one
            shape); the gate input is still each image's own area when the
            data samples are given.
        """
        feats = self.extract_feat(batch_inputs)
        outputs = None
        exits, reuse = self.gate_exits(feats, batch_data_samples)
        for exit_layer, index in self.exit_groups(exits):
            group_samples = None if batch_data_samples is None else [
                batch_data_samples[i] for i in index.tolist()
            ]
            group_outputs = self.forward_exit_by_feat(
                [feat[index] for feat in feats], group_samples, exit_layer,
                **take_rows(reuse, index))
            outputs = _scatter(outputs, group_outputs, index,
                               len(batch_inputs), self.gated_output_batch_dim)
        return outputs
