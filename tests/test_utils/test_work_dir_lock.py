# Copyright (c) The proscale Authors. All rights reserved.
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from proscale.utils.work_dir_lock import (LOCK_NAME, WorkDirBusyError,
                                          WorkDirLock)


@pytest.fixture
def holder(tmp_path):
    """Another run: a process that holds the lock of ``tmp_path/work`` (an
    flock on the lock file, which names it) until killed. Plain Python, to
    start fast."""
    ready = tmp_path / 'ready'
    (tmp_path / 'work').mkdir()
    code = textwrap.dedent(f"""
        import fcntl, json, os, pathlib, socket, time
        lock = open({str(tmp_path / 'work' / LOCK_NAME)!r}, 'a+')
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        json.dump(dict(pid=os.getpid(), host=socket.gethostname(),
                       started='2026-01-01 10:00:00 UTC'), lock)
        lock.flush()
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, '-c', code])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    yield proc
    proc.kill()
    proc.wait()


def test_lock_is_held_and_released(tmp_path):
    work_dir = tmp_path / 'work'
    with WorkDirLock(str(work_dir)):
        record = json.loads((work_dir / LOCK_NAME).read_text())
        assert record['pid'] == os.getpid()
        assert record['host'] == socket.gethostname()
    assert not (work_dir / LOCK_NAME).exists()
    with WorkDirLock(str(work_dir)):  # free again
        pass


def test_second_run_is_refused_with_the_holder(tmp_path, holder):
    with pytest.raises(WorkDirBusyError) as error:
        with WorkDirLock(str(tmp_path / 'work')):
            pass
    message = str(error.value)
    assert f'pid {holder.pid} on host {socket.gethostname()}' in message
    assert 'started 2026-01-01 10:00:00 UTC' in message
    assert f"work dir {tmp_path / 'work'} is in use" in message


def test_lock_of_a_killed_run_is_taken_over(tmp_path, holder):
    holder.kill()  # SIGKILL: the lock file stays, naming a dead pid
    holder.wait()
    lock_file = tmp_path / 'work' / LOCK_NAME
    assert json.loads(lock_file.read_text())['pid'] == holder.pid
    with WorkDirLock(str(tmp_path / 'work')):
        assert json.loads(lock_file.read_text())['pid'] == os.getpid()


def test_other_ranks_do_not_lock(tmp_path, holder, monkeypatch):
    monkeypatch.setenv('RANK', '1')
    with WorkDirLock(str(tmp_path / 'work')):
        pass
