# Copyright (c) The proscale Authors. All rights reserved.
"""The early-exit interface shared by the ECO detectors."""
from abc import ABCMeta, abstractmethod
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Tuple, TypeVar, Union)

from mmdet.models.utils import reweight_loss_dict
from mmdet.structures import SampleList
from torch import Tensor

from .gated_inference import GATE_EXIT

_T = TypeVar('_T')
ExitLosses = Iterator[Tuple[int, Dict[str, Tensor]]]


class EarlyExitMixin(metaclass=ABCMeta):
    """An early-exit encoder behind a detector (ECO-M2F's parent model).

    Mixed into a detector before its mmdet base class, it gives the
    interface that ``ExitSamplingHook`` (weighted stochastic depth), the
    multi-exit loops and ``tools/eco`` drive:

    - :attr:`exit_layers`, :meth:`check_exits`, :meth:`set_exit`,
      :attr:`current_exit`, :attr:`test_exit_layer`;
    - :meth:`loss` at the current exit, multiplied by :attr:`loss_weight`,
      or at every exit of :attr:`exit_loss_weights` from one backbone and
      encoder pass, as ``sum_k alpha_k * L_k`` term by term (log keys stay
      the detector's); afterwards :attr:`exit_losses` maps each exit that
      ran to its unweighted total loss (detached);
    - :meth:`predict_exits`: several exits of one backbone and encoder pass;
    - :meth:`predict` and :meth:`_forward` (``mode='tensor'``, the forward
      the FLOP counter traces) at ``test_cfg.exit_layer``: an exit fixed
      for the whole batch, the current exit (None), or each image's gated
      exit (``'gate'``, :meth:`predict_gated` / :meth:`forward_gated` of
      ``GatedInferenceMixin``).

    The detector names the per-image quality its exits are scored by
    (:attr:`exit_quality_task`, a key of ``proscale.evaluation.
    EXIT_QUALITY``: the derived exit dataset and the oracle use it) and
    implements the model-specific parts: :attr:`exit_layers`,
    :attr:`num_encoder_layers`, :attr:`encoder_exit` (getter and setter),
    :meth:`loss_exits_by_feat` and :meth:`predict_exits_by_feat`, and calls
    :meth:`init_early_exit` at the end of its ``__init__``.
    """

    exit_quality_task: str

    @property
    @abstractmethod
    def exit_layers(self) -> Tuple[int, ...]:
        """tuple[int]: The valid exits (numbers of encoder layers run)."""

    @property
    @abstractmethod
    def num_encoder_layers(self) -> int:
        """int: Depth of the encoder, the exit of a forward with
        :attr:`encoder_exit` None."""

    @property
    @abstractmethod
    def encoder_exit(self) -> Optional[int]:
        """int | None: The exit plain forwards run; None runs all layers."""

    @abstractmethod
    def loss_exits_by_feat(self, feats: Tuple[Tensor],
                           batch_data_samples: SampleList,
                           exits: Optional[List[int]]) -> ExitLosses:
        """Compute the detector's losses at one or several exits.

        Args:
            feats (tuple[Tensor]): Features from ``extract_feat``.
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples with the ground truth.
            exits (list[int], optional): Exits to decode from one encoder
                pass, increasing; None decodes :attr:`current_exit` with a
                plain forward.

        Yields:
            tuple[int, dict[str, Tensor]]: ``(k, losses)`` of each exit,
            unweighted.
        """

    @abstractmethod
    def predict_exits_by_feat(self,
                              feats: Tuple[Tensor],
                              batch_data_samples: SampleList,
                              exits: Optional[Iterable[int]] = None,
                              rescale: bool = True) -> Dict[int, SampleList]:
        """Like :meth:`predict_exits`, from given backbone (and neck)
        features."""

    def init_early_exit(self) -> None:
        """Reset the training state (weights, per-exit losses) and check
        ``test_cfg.exit_layer``."""
        self.loss_weight = 1.0
        self.exit_loss_weights: Optional[Dict[int, float]] = None
        self.exit_losses: Dict[int, Tensor] = {}
        if self.test_exit_layer not in (None, GATE_EXIT):
            self.check_exits([self.test_exit_layer], 'test_cfg.exit_layer')

    @property
    def current_exit(self) -> int:
        """int: Number of encoder layers a plain forward runs now."""
        exit_layer = self.encoder_exit
        return self.num_encoder_layers if exit_layer is None else exit_layer

    @property
    def test_exit_layer(self) -> Optional[Union[int, str]]:
        """int | str, optional: The exit fixed by ``test_cfg.exit_layer``,
        or ``'gate'`` for gated inference."""
        return (self.test_cfg or {}).get('exit_layer')

    def check_exits(self,
                    exits: Iterable[int],
                    name: str = 'exits') -> List[int]:
        """Check exits against :attr:`exit_layers`.

        Args:
            exits (Iterable[int]): Requested exits.
            name (str): How to name them in the error message.

        Returns:
            list[int]: The exits, sorted and without duplicates.

        Raises:
            ValueError: If ``exits`` is empty or holds an invalid exit.
        """
        exits = list(exits)
        invalid = [k for k in exits if k not in self.exit_layers]
        if invalid or not exits:
            raise ValueError(
                f'{name}={exits!r}: every exit must be one of the '
                f"encoder's exit_layers {self.exit_layers}")
        return sorted(set(exits))

    def set_exit(self, exit_layer: Optional[int]) -> None:
        """Make plain forwards run ``exit_layer`` encoder layers.

        Args:
            exit_layer (int, optional): One of :attr:`exit_layers`, or None
                for all layers.
        """
        if exit_layer is not None:
            self.check_exits([exit_layer], 'exit_layer')
        self.encoder_exit = exit_layer

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Compute the losses at the current exit or at several exits.

        Args:
            batch_inputs (Tensor): Input images of shape (B, C, H, W).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples with the ground truth.

        Returns:
            dict[str, Tensor]: The detector's loss terms, weighted by
            :attr:`exit_loss_weights` and summed over exits when that is
            set, and multiplied by :attr:`loss_weight`.
        """
        weights = self.exit_loss_weights
        exits = None if weights is None else self.check_exits(
            weights, 'exit_loss_weights')
        feats = self.extract_feat(batch_inputs)
        losses: Dict[str, Tensor] = {}
        self.exit_losses = {}
        for exit_layer, exit_losses in self.loss_exits_by_feat(
                feats, batch_data_samples, exits):
            self.exit_losses[exit_layer] = self._total(exit_losses)
            if weights is not None:
                exit_losses = reweight_loss_dict(exit_losses,
                                                 weights[exit_layer])
            for name, value in exit_losses.items():
                losses[name] = losses[name] + value if name in losses \
                    else value
        return reweight_loss_dict(losses, self.loss_weight)

    def _total(self, losses: Dict[str, Tensor]) -> Tensor:
        """Return the detached sum of the loss terms, as the optimiser sees
        it without weights."""
        total, _ = self.parse_losses(losses)
        return total.detach()

    def predict_exits(self,
                      batch_inputs: Tensor,
                      batch_data_samples: SampleList,
                      exits: Optional[Iterable[int]] = None,
                      rescale: bool = True) -> Dict[int, SampleList]:
        """Predict at several exits with one backbone and encoder pass.

        Args:
            batch_inputs (Tensor): Input images of shape (B, C, H, W).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples.
            exits (Iterable[int], optional): Exits to decode; defaults to
                :attr:`exit_layers`.
            rescale (bool): Whether to rescale the results to the original
                image size. Defaults to True.

        Returns:
            dict[int, list[:obj:`DetDataSample`]]: For each exit, the
            predictions as ``predict`` gives them at that exit. With
            one exit these are ``batch_data_samples`` themselves, otherwise
            copies of them.
        """
        feats = self.extract_feat(batch_inputs)
        return self.predict_exits_by_feat(feats, batch_data_samples, exits,
                                          rescale)

    @abstractmethod
    def predict_gated(self,
                      batch_inputs: Tensor,
                      batch_data_samples: SampleList,
                      rescale: bool = True) -> SampleList:
        """Predict every image at the exit its gate picks."""

    @abstractmethod
    def forward_gated(
        self,
        batch_inputs: Tensor,
        batch_data_samples: Optional[SampleList] = None
    ) -> Tuple[List[Tensor]]:
        """The network forward of every image at the exit its gate picks."""

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Predict at ``test_cfg.exit_layer`` (or at the current exit, or
        at each image's gated exit with ``test_cfg.exit_layer='gate'``).

        Args:
            batch_inputs (Tensor): Input images of shape (B, C, H, W).
            batch_data_samples (list[:obj:`DetDataSample`]): The batch data
                samples.
            rescale (bool): Whether to rescale the results to the original
                image size. Defaults to True.

        Returns:
            list[:obj:`DetDataSample`]: ``batch_data_samples`` with the
            predictions of the base detector's ``predict``.
        """
        return self._at_test_exit(super().predict, self.predict_gated,
                                  batch_inputs, batch_data_samples, rescale)

    def _forward(
        self,
        batch_inputs: Tensor,
        batch_data_samples: Optional[SampleList] = None
    ) -> Tuple[List[Tensor]]:
        """Network forward without post-processing (``mode='tensor'``, the
        forward the FLOP counter traces), at ``test_cfg.exit_layer`` like
        :meth:`predict`.

        Args:
            batch_inputs (Tensor): Input images of shape (B, C, H, W).
            batch_data_samples (list[:obj:`DetDataSample`], optional): The
                batch data samples.

        Returns:
            tuple[list[Tensor]]: The head outputs of the base detector's
            ``_forward``.
        """
        return self._at_test_exit(super()._forward, self.forward_gated,
                                  batch_inputs, batch_data_samples)

    def _at_test_exit(self, fixed: Callable[..., _T],
                      gated: Callable[..., _T], *args: Any) -> _T:
        """Run an inference path at the exit ``test_cfg.exit_layer`` asks
        for; ``predict`` and ``_forward`` both go through here.

        Args:
            fixed (Callable): The path for one exit for the whole batch
                (the base detector's), run with the encoder's exit set to an
                integer ``test_cfg.exit_layer`` (restored afterwards), or at
                the exit of :meth:`set_exit` when that is None.
            gated (Callable): The gated path, run when
                ``test_cfg.exit_layer='gate'``.
            *args: The arguments of both paths.

        Returns:
            The result of the path that ran.
        """
        exit_layer = self.test_exit_layer
        if exit_layer == GATE_EXIT:
            return gated(*args)
        if exit_layer is None:
            return fixed(*args)
        previous = self.encoder_exit
        self.set_exit(exit_layer)
        try:
            return fixed(*args)
        finally:
            self.encoder_exit = previous
