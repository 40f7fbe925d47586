# Copyright (c) The proscale Authors. All rights reserved.
import os

import pytest

from proscale.utils import atomic_open


def test_file_appears_only_when_complete(tmp_path):
    path = tmp_path / 'sub' / 'out.txt'
    with atomic_open(str(path)) as f:
        f.write('new')
        assert not path.exists()
    assert path.read_text() == 'new'
    with atomic_open(str(path), 'wb') as f:
        f.write(b'bytes')
    assert path.read_bytes() == b'bytes'
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ['out.txt']


def test_error_keeps_the_old_file(tmp_path):
    path = tmp_path / 'out.txt'
    path.write_text('old')
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_open(str(path)) as f:
            f.write('half')
            raise RuntimeError('boom')
    assert path.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['out.txt']
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_open(str(path), 'a'):
            pass
