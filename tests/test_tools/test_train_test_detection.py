# Copyright (c) The proscale Authors. All rights reserved.
"""End-to-end ``tools/train.py`` and ``tools/test.py`` runs of the tiny
PRO-SCALE DINO on the synthetic dataset's things (box detection)."""
import json

import pytest

TINY_CONFIG = ('configs/proscale_detr/dino-4scale_r18_proscale-1122_'
               '1xb4-tiny_synthetic-detection.py')
TRAIN = 'tools/train.py'
TEST = 'tools/test.py'
# 2 iterations of batch 2, then validation.
SHORT_RUN = ('train_cfg.max_iters=2', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2',
             'default_hooks.logger.interval=1',
             'train_dataloader.batch_size=2')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, run_tool, synthetic_detection_cfg_options):
    """Work dir of a 2-iteration training run of the tiny config."""
    work_dir = tmp_path_factory.mktemp('train_detection')
    run_tool(TRAIN, TINY_CONFIG, '--work-dir', work_dir, '--cfg-options',
             *synthetic_detection_cfg_options, *SHORT_RUN)
    return work_dir


def test_train_validates_with_box_ap(trained):
    assert (trained / 'iter_2.pth').is_file()
    record = (
        sorted(trained.glob('*/vis_data/scalars.json'))
        [-1].read_text().strip().splitlines()[-1])
    assert 0 <= json.loads(record)['coco/bbox_mAP'] <= 1


def test_test_evaluates_checkpoint(trained, tmp_path, run_tool,
                                   synthetic_detection_cfg_options):
    run_tool(TEST, TINY_CONFIG, trained / 'iter_2.pth', '--work-dir', tmp_path,
             '--cfg-options', *synthetic_detection_cfg_options)
    scalars = json.loads(next(tmp_path.glob('*/*.json')).read_text())
    assert 0 <= scalars['coco/bbox_mAP'] <= 1
    assert 'coco/bbox_mAP_50' in scalars
