# Copyright (c) The proscale Authors. All rights reserved.
"""A lock file that keeps a second training out of a busy work dir.

Two trainings on the same ``--work-dir`` would write into one log folder and
leave a config and checkpoints that disagree. :class:`WorkDirLock` holds an
exclusive ``flock`` on ``WORK_DIR/.lock`` and writes its run's pid, host and
start time into it; a second run is refused with a message naming them. The
operating system drops the lock when its process ends, however it ends, so
the lock of a run killed with SIGKILL (a stale lock file naming a dead pid)
is simply taken over.
"""
import fcntl
import logging
import json
import os
import os.path as osp
import socket
import time
from typing import IO, Optional, Tuple

from mmengine.logging import print_log

LOCK_NAME = '.lock'


class WorkDirBusyError(RuntimeError):
    """The work dir is locked by another live run."""


def _is_main_process() -> bool:
    """Whether this is rank 0 of its job (launchers set these variables
    before mmengine's process group exists)."""
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        if name in os.environ:
            return int(os.environ[name]) == 0
    return True


class WorkDirLock:
    """Hold ``WORK_DIR/.lock`` for the duration of a ``with`` block.

    Only rank 0 of a job takes the lock; the other ranks share its work dir.
    The lock file is removed when the block ends.

    Args:
        work_dir (str): The work dir (created if missing).

    Raises:
        WorkDirBusyError: On entry, if a live run holds the lock; the
            message names its pid, host and start time.
    """

    def __init__(self, work_dir: str) -> None:
        self.path = osp.join(work_dir, LOCK_NAME)
        self._file: Optional[IO[str]] = None

    def _open_locked(self) -> Tuple[Optional[IO[str]], str]:
        """Open the lock file and lock it.

        The file is reopened if it was replaced while being locked (its
        holder removed it on release), so two runs never hold two files.

        Returns:
            tuple[IO | None, str]: The locked file, or None and the record
            of the run that holds it.
        """
        while True:
            lock_file = open(self.path, 'a+')
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.seek(0)
                holder = lock_file.read()
                lock_file.close()
                return None, holder
            try:
                same = os.stat(self.path).st_ino == os.fstat(
                    lock_file.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return lock_file, ''
            lock_file.close()

    def acquire(self) -> None:
        """Take the lock (see the class docstring)."""
        if not _is_main_process():
            return
        os.makedirs(osp.dirname(self.path) or '.', exist_ok=True)
        lock_file, busy = self._open_locked()
        if lock_file is None:
            try:
                holder = json.loads(busy)
            except ValueError:
                holder = {}
            raise WorkDirBusyError(
                f'work dir {osp.dirname(self.path)} is in use by another '
                f"training (pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')}, started "
                f"{holder.get('started', '?')}; lock file {self.path}); wait "
                'for it to end or choose another --work-dir')
        lock_file.seek(0)
        stale = lock_file.read()
        if stale:
            print_log(
                f'taking over the lock of a run that has ended ({stale}): '
                f'{self.path}',
                logger='current',
                level=logging.WARNING)
        lock_file.seek(0)
        lock_file.truncate()
        json.dump(
            dict(
                pid=os.getpid(),
                host=socket.gethostname(),
                started=time.strftime('%Y-%m-%d %H:%M:%S %Z')), lock_file)
        lock_file.flush()
        self._file = lock_file

    def release(self) -> None:
        """Remove the lock file and drop the lock, if this run holds it."""
        if self._file is not None:
            os.remove(self.path)
            self._file.close()  # drops the flock
            self._file = None

    def __enter__(self) -> 'WorkDirLock':
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
