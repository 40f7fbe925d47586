# Copyright (c) The proscale Authors. All rights reserved.
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import PixelData

from proscale.engine.loops import (fixed_exit_policy, policy_predictions,
                                   split_policy_metrics)


def _outputs():
    """Predictions of a 2-image batch at exits 2 and 3 (value = 10 * exit +
    image)."""
    return {
        k: [
            DetDataSample(
                metainfo=dict(img_id=i),
                pred_panoptic_seg=PixelData(
                    sem_seg=torch.full((1, 2, 2), 10 * k + i)))
            for i in range(2)
        ]
        for k in (2, 3)
    }


def test_policy_predictions_pick_each_images_exit():
    picked = policy_predictions(_outputs(), [3, 2])
    assert [p.pred_panoptic_seg.sem_seg[0, 0, 0].item()
            for p in picked] == [30, 21]
    assert [p.img_id for p in picked] == [0, 1]


def test_policies_do_not_share_predictions():
    """mmdet's CocoPanopticMetric rewrites the panoptic map it is given; one
    policy's evaluation must not change another's input."""
    outputs = _outputs()
    first = policy_predictions(outputs, [2, 2])
    first[0].pred_panoptic_seg.sem_seg[...] = 0
    second = policy_predictions(outputs, [2, 3])
    assert second[0].pred_panoptic_seg.sem_seg.eq(20).all()
    assert outputs[2][0].pred_panoptic_seg.sem_seg.eq(20).all()


def test_split_policy_metrics():
    metrics = {
        'exit2/coco_panoptic/PQ': 1.0,
        'beta0.01/coco_panoptic/PQ': 2.0,
        'beta0.01/coco/segm_mAP': 3.0,
    }
    assert split_policy_metrics(metrics) == {
        fixed_exit_policy(2): {
            'coco_panoptic/PQ': 1.0
        },
        'beta0.01': {
            'coco_panoptic/PQ': 2.0,
            'coco/segm_mAP': 3.0
        }
    }
