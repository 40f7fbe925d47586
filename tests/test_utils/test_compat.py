# Copyright (c) The proscale Authors. All rights reserved.
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub

from proscale.utils import (allow_mmengine_checkpoint_globals,
                            mmengine_checkpoint_globals,
                            silence_pkg_resources_deprecation)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _runner_like_checkpoint() -> dict:
    hub = MessageHub.get_instance('test_compat')
    hub.update_scalar('train/loss', 1.0)
    hub.update_scalar('train/loss', np.float64(3.0))
    hub.update_info('iter', 7)
    hub.update_info('scale', np.array([1.5, 2.5]))
    return dict(
        meta=dict(seed=np.int64(42), message_hub=hub.state_dict()),
        state_dict={'weight': torch.arange(3.)})


def test_runner_checkpoint_loads_with_weights_only(tmp_path):
    allow_mmengine_checkpoint_globals()
    path = tmp_path / 'ckpt.pth'
    torch.save(_runner_like_checkpoint(), path)
    checkpoint = torch.load(path, weights_only=True)
    history = checkpoint['meta']['message_hub']['log_scalars']['train/loss']
    assert isinstance(history, HistoryBuffer)
    assert history.mean() == pytest.approx(2.0)
    assert history.statistics('current') == pytest.approx(3.0)
    assert checkpoint['meta']['seed'] == 42
    assert torch.equal(checkpoint['state_dict']['weight'], torch.arange(3.))


def test_safety_is_not_disabled(tmp_path):
    allow_mmengine_checkpoint_globals()
    path = tmp_path / 'evil.pth'
    torch.save({'callable': print}, path)
    with pytest.raises(Exception, match='Unsupported global'):
        torch.load(path, weights_only=True)
    assert print not in mmengine_checkpoint_globals()


def test_history_buffer_statistics_survive_pickling(tmp_path):
    allow_mmengine_checkpoint_globals()
    buffer = HistoryBuffer()
    for value in (1.0, 2.0, 4.0):
        buffer.update(value)
    path = tmp_path / 'buffer.pth'
    torch.save(buffer, path)
    restored = torch.load(path, weights_only=True)
    assert restored.max() == 4.0 and restored.min() == 1.0


def test_mmdet_bases_load_without_pkg_resources_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('default')
        silence_pkg_resources_deprecation()
        Config.fromfile(REPO_ROOT / 'configs/mask2former/'
                        'mask2former_r50_8xb2-lsj-50e_coco-panoptic.py')
        warnings.warn('another warning', UserWarning)
    messages = [str(warning.message) for warning in caught]
    assert not any('pkg_resources' in message for message in messages)
    assert 'another warning' in messages
