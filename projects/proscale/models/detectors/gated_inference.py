"""Gated inference of ECO-M2F (step C): a gate picks each image's exit.

:class:`GatedInferenceMixin` gives ``EcoMask2Former`` its gated path, used
when ``test_cfg.exit_layer='gate'``: backbone on the whole batch, the exit
gate on the pooled projected 1/32 features (``pixel_decoder.gate_features``),
then encoder, transformer decoder and post-processing per exit.

Mixed batches are grouped by exit: the images the gate sends to exit ``k``
run the encoder for ``k`` layers, together, and are decoded together. The
alternative, running the whole batch to its deepest exit once and reading
each image at its own exit, would charge every image of a batch the depth of
its hardest image, so the saving the gate was trained for would shrink with
the batch size; grouping spends exactly the per-image cost the gate chose
(what the FLOP counter's per-image average reports) for at most one encoder
and decoder call per exit. Each group runs the fixed-exit inference path
unchanged, and every operation after the backbone treats the images of a
batch independently, so a batch gives the results of its images run one by
one.
"""
from typing import Any, List, Optional, Sequence, Tuple

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import OptConfigType
from torch import Tensor

from ..dense_heads import PixelDecoderOutput
from ..gates import ExitGate

# ``test_cfg.exit_layer`` value that turns gated inference on.
GATE_EXIT = 'gate'


def _scatter(outputs: Any, group_outputs: Any, index: Tensor,
             batch_size: int) -> Any:
    """Write a group's nested tensor outputs into the batch's outputs.

    Args:
        outputs (Any): Batch outputs so far (tensors with the batch first,
            nested in tuples and lists), or None to allocate them.
        group_outputs (Any): The group's outputs, the same nesting.
        index (Tensor): Batch positions of the group's images.
        batch_size (int): Images in the batch.

    Returns:
        Any: The batch outputs with the group's rows filled in.
    """
    if isinstance(group_outputs, Tensor):
        if outputs is None:
            outputs = group_outputs.new_empty((batch_size, ) +
                                              group_outputs.shape[1:])
        outputs[index] = group_outputs
        return outputs
    if outputs is None:
        outputs = [None] * len(group_outputs)
    return type(group_outputs)(
        _scatter(out, group_out, index, batch_size)
        for out, group_out in zip(outputs, group_outputs))


class GatedInferenceMixin:
    """Gated inference for ``EcoMask2Former``.

    The host class calls :meth:`build_gate` in its constructor and, when
    ``test_cfg.exit_layer == 'gate'``, routes ``predict`` to
    :meth:`predict_gated` and the tensor forward (``mode='tensor'``, traced
    by the FLOP counter) to :meth:`forward_gated`. The chosen exit of every
    image is written to its data sample's metainfo as ``exit_layer``.
    """

    gate: Optional[ExitGate]

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

    def gate_exits(self, feats: Sequence[Tensor]) -> Tensor:
        """Let the gate pick every image's exit.

        Args:
            feats (Sequence[Tensor]): Backbone (and neck) features, each of
                shape (B, C_i, H_i, W_i).

        Returns:
            Tensor: The chosen exits (numbers of encoder layers), shape
            (B, ), int64.
        """
        if self.gate is None:
            raise ValueError('this model has no gate (model.gate is None)')
        if not bool(self.gate.trained):
            raise RuntimeError(
                'the exit gate has no trained weights: load a checkpoint '
                'with the gate merged in (tools/eco/merge_gate.py PARENT '
                'GATE.pth --out MERGED.pth)')
        gate_input = self.panoptic_head.pixel_decoder.gate_features(
            list(feats))
        return self.gate.predict(gate_input)

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
        feats = self.extract_feat(batch_inputs)
        for exit_layer, index in self.exit_groups(self.gate_exits(feats)):
            group_samples = [batch_data_samples[i] for i in index.tolist()]
            self.predict_exits_by_feat([feat[index] for feat in feats],
                                       group_samples, [exit_layer], rescale)
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
            (classification and mask logits of every decoder layer), each
            image's rows computed at its exit.
        """
        feats = self.extract_feat(batch_inputs)
        outputs = None
        for exit_layer, index in self.exit_groups(self.gate_exits(feats)):
            _, mask_feature, multi_scale_features = next(
                self.panoptic_head.pixel_decoder.forward_exits(
                    [feat[index] for feat in feats], [exit_layer]))
            group_samples = None if batch_data_samples is None else [
                batch_data_samples[i] for i in index.tolist()
            ]
            group_outputs = self.panoptic_head.forward(
                PixelDecoderOutput(mask_feature, multi_scale_features),
                group_samples)
            outputs = _scatter(outputs, group_outputs, index,
                               len(batch_inputs))
        return outputs
