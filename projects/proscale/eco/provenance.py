# Copyright (c) The proscale Authors. All rights reserved.
"""Checks that a gate (or its training data) belongs to a parent checkpoint.

The derived exit dataset records the parent checkpoint it was computed from
(``meta['checkpoint']``: path and sha256), and a gate file trained on it
keeps that record (``meta['derived']['checkpoint']``). A gate trained on
another parent's qualities and features picks meaningless exits, so the
tools refuse such a pair unless forced.
"""
import logging
from typing import Optional

from mmengine.logging import print_log

from ..utils.checkpoint_checks import checkpoint_sha256


class ParentMismatchError(ValueError):
    """Derived data or a gate that comes from another parent checkpoint."""


def check_parent_checkpoint(recorded: Optional[dict],
                            parent: str,
                            source: str,
                            force: bool = False) -> None:
    """Check that ``parent`` is the checkpoint ``source`` was derived from.

    Args:
        recorded (dict, optional): The recorded parent, ``dict(path=...,
            sha256=...)``; None (an older file) only logs a warning.
        parent (str): The parent checkpoint given on the command line.
        source (str): What holds the record, for the messages (e.g.
            ``'gate file g.pth'``).
        force (bool): Only warn on a mismatch. Defaults to False.

    Raises:
        ParentMismatchError: If the SHA-256 of ``parent`` differs from the
            recorded one and ``force`` is False.
    """
    if not recorded or not recorded.get('sha256'):
        print_log(
            f'{source} does not record its parent checkpoint: cannot check '
            f'that it belongs to {parent}',
            logger='current',
            level=logging.WARNING)
        return
    actual = checkpoint_sha256(parent)
    if actual == recorded['sha256']:
        return
    message = (f"{source} was derived from the parent checkpoint "
               f"{recorded.get('path')} (sha256 {recorded['sha256'][:12]}), "
               f'not from {parent} (sha256 {actual[:12]})')
    if not force:
        raise ParentMismatchError(
            f'{message}; pass --force to use them together anyway')
    print_log(
        f'{message}; used anyway (--force)',
        logger='current',
        level=logging.WARNING)
