# Copyright (c) The proscale Authors. All rights reserved.
from unittest import mock

import pytest

from proscale.eco.provenance import (ParentMismatchError,
                                     check_parent_checkpoint)
from proscale.utils.checkpoint_checks import checkpoint_sha256


@pytest.fixture
def parent(tmp_path) -> str:
    path = tmp_path / 'parent.pth'
    path.write_bytes(b'weights')
    return str(path)


def test_same_parent_passes(parent):
    check_parent_checkpoint(
        dict(path='elsewhere/parent.pth', sha256=checkpoint_sha256(parent)),
        parent, 'gate file g.pth')


def test_other_parent_is_refused_unless_forced(parent):
    recorded = dict(path='old.pth', sha256='ab' * 32)
    with pytest.raises(ParentMismatchError) as error:
        check_parent_checkpoint(recorded, parent, 'gate file g.pth')
    assert str(error.value).startswith(
        'gate file g.pth was derived from the parent checkpoint old.pth '
        f'(sha256 abababababab), not from {parent}')
    assert str(error.value).endswith('pass --force to use them together '
                                     'anyway')
    with mock.patch('proscale.eco.provenance.print_log') as print_log:
        check_parent_checkpoint(recorded, parent, 'gate file g.pth', True)
    assert 'used anyway (--force)' in print_log.call_args.args[0]


def test_missing_record_only_warns(parent):
    with mock.patch('proscale.eco.provenance.print_log') as print_log:
        check_parent_checkpoint(None, parent, 'gate file g.pth')
    assert 'does not record its parent' in print_log.call_args.args[0]
