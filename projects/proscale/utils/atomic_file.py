# Copyright (c) The proscale Authors. All rights reserved.
"""Atomic file writes: readers never see a partially written file."""
import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from typing import IO, Iterator


def _umask() -> int:
    """The process's file mode creation mask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str, mode: str = 'w') -> Iterator[IO]:
    """Open a file for writing that appears at ``path`` only when complete.

    The data goes to a temporary file in the same folder, which replaces
    ``path`` (``os.replace``) once the block ends without an error; after
    an error the temporary file is removed and an existing ``path`` is left
    as it was.

    Args:
        path (str): The destination file; its folder is created if needed.
        mode (str): ``'w'`` (text) or ``'wb'`` (binary). Defaults to 'w'.

    Yields:
        IO: The open temporary file.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        # mkstemp makes the file private; give it a plain file's permissions
        os.chmod(tmp_path, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
