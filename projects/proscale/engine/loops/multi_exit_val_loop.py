# Copyright (c) The proscale Authors. All rights reserved.
"""Validate every encoder exit of an early-exit model in one pass."""
from typing import Dict, Optional, Sequence, Union

from mmengine.registry import LOOPS
from torch.utils.data import DataLoader

from .multi_evaluator_test_loop import fixed_exit_policy
from .multi_exit_test_loop import MultiExitTestLoop


@LOOPS.register_module()
class MultiExitValLoop(MultiExitTestLoop):
    """Validation loop that evaluates several encoder exits in one pass.

    :class:`MultiExitTestLoop` run as the validation of a training (the
    ``before_val`` / ``after_val_iter`` / ``after_val_epoch`` hooks): the
    backbone and the encoder run once per batch and every exit's
    predictions go to its own copy of the validation evaluator. The metrics
    are those of exit ``k`` under ``'exit{k}/{metric}'`` (logged as
    ``val/exit{k}/...`` scalars) plus those of ``main_exit`` under the
    usual names (e.g. ``coco_panoptic/PQ``), so ``save_best`` can select
    checkpoints on the main exit (``save_best='coco_panoptic/PQ'``) or on
    any exit (``save_best='exit4/coco_panoptic/PQ'``).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The validation dataloader (config).
        evaluator (dict | list): The validation evaluator config, built
            once per exit.
        exits (Sequence[int], optional): Exits to evaluate; defaults to the
            model's ``exit_layers``.
        main_exit (int, optional): The exit whose metrics also get the
            usual names; defaults to the deepest of ``exits``.
        fp16 (bool): Whether to validate with automatic mixed precision.
            Defaults to False.
    """

    stage = 'val'

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, dict],
                 evaluator: Union[dict, list],
                 exits: Optional[Sequence[int]] = None,
                 main_exit: Optional[int] = None,
                 fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, exits, fp16)
        if main_exit is None:
            main_exit = self.exits[-1]
        if main_exit not in self.exits:
            raise ValueError(f'val_cfg.main_exit={main_exit!r} must be one '
                             f'of the validated exits {self.exits}')
        self.main_exit = main_exit

    def extra_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """The main exit's metrics under the usual names.

        Args:
            metrics (dict[str, float]): ``{'exit{k}/{metric}': value}``.

        Returns:
            dict[str, float]: ``{metric: value}`` of :attr:`main_exit`.
        """
        prefix = fixed_exit_policy(self.main_exit) + '/'
        return {
            name[len(prefix):]: value
            for name, value in metrics.items() if name.startswith(prefix)
        }
