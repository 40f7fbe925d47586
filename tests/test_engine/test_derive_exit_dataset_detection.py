# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F step B for detection: tools/eco/derive_exit_dataset.py on a
tiny EcoDINO parent gives, for every image and exit, the box AP / AP50 /
AP75 that pycocotools reports for that image alone, and its gate input."""
import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoMetric
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from proscale.engine.loops.derive_exit_dataset_loop import \
    derive_dataloader_cfg
from proscale.evaluation import load_exit_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
EXITS = [2, 3, 4, 5, 6]


def _pycocotools_stats(coco, cat_ids, image_id, prediction, prefix):
    """``stats[0:3]`` of COCOeval on this image alone, with the detections
    as CocoMetric.results2json writes them (-1: undefined)."""
    metric = CocoMetric(metric='bbox')
    metric.cat_ids = cat_ids
    instances = prediction.pred_instances
    files = metric.results2json([
        dict(
            img_id=image_id,
            bboxes=instances.bboxes.numpy(),
            scores=instances.scores.numpy(),
            labels=instances.labels.numpy())
    ], prefix)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(files['bbox']), 'bbox')
        evaluator.params.imgIds = [image_id]
        evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[:3]


@pytest.fixture(scope='module')
def parent_model(tiny_eco_dino_checkpoint, synthetic_detection_cfg_options):
    """The tiny parent with its checkpoint, and the config it runs with."""
    config, checkpoint = tiny_eco_dino_checkpoint
    cfg = Config.fromfile(str(REPO_ROOT / config))
    cfg.merge_from_dict(
        dict(option.split('=', 1)
             for option in synthetic_detection_cfg_options))
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval(), cfg


def test_derived_box_ap_equals_pycocotools_per_image(
        tiny_eco_dino_derived, tiny_eco_dino_checkpoint, parent_model,
        synthetic_data_root, single_thread, tmp_path):
    model, cfg = parent_model
    ann_file = f'{synthetic_data_root}annotations/instances_train.json'
    data = load_exit_dataset(
        tiny_eco_dino_derived,
        expected_exits=EXITS,
        expected_dataset=dict(split='train', ann_file=ann_file))
    assert data.task == 'bbox' and data.meta['format_version'] == 2
    assert data.metrics == ('ap', 'ap50', 'ap75')
    assert data.groups == ('All', )
    assert data.ap.shape == (len(data), len(EXITS), 1)
    # the pooled neck outputs of 1/64, 1/32, 1/16 and 1/8 (256 channels)
    assert data.meta['gate_input_levels'] == 4
    assert data.gate_inputs.shape == (len(data), 4 * 256)
    assert data.layer1_gate_inputs is None
    assert data.meta['checkpoint']['path'] == tiny_eco_dino_checkpoint[1]
    assert not Path(f'{tiny_eco_dino_derived}.parts').exists()
    image_ids = sorted(image['id'] for image in json.loads(
        Path(ann_file).read_text())['images'])
    assert data.image_ids.tolist() == image_ids

    dataset = DATASETS.build(derive_dataloader_cfg(cfg, 'train')['dataset'])
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(ann_file)
    cat_ids = coco.getCatIds(catNms=dataset.metainfo['classes'])
    row = {image_id: i for i, image_id in enumerate(data.image_ids)}
    for index in range(len(dataset)):
        batch = model.data_preprocessor(pseudo_collate([dataset[index]]),
                                        False)
        with torch.no_grad():
            feats = model.extract_feat(batch['inputs'])
            gate_input = model.gate_input(feats, batch['data_samples'], None,
                                          4)
            outputs = model.predict_exits_by_feat(feats,
                                                  batch['data_samples'],
                                                  EXITS)
        image_id = batch['data_samples'][0].img_id
        i = row[image_id]
        np.testing.assert_allclose(data.gate_inputs[i], gate_input[0],
                                   rtol=1e-5, atol=1e-5)
        for j, k in enumerate(EXITS):
            expected = _pycocotools_stats(coco, cat_ids, image_id,
                                          outputs[k][0],
                                          str(tmp_path / f'{index}-{k}'))
            stored = [data.quality(m)[i, j] for m in data.metrics]
            if (expected < 0).all():
                assert np.isnan(stored).all()
            else:
                np.testing.assert_allclose(stored, expected, rtol=0,
                                           atol=1e-12)


def _derive_args(tiny_eco_dino_checkpoint, options, out, *extra):
    config, checkpoint = tiny_eco_dino_checkpoint
    return [
        config, checkpoint, '--out',
        str(out), '--work-dir',
        str(Path(out).parent / 'logs'), *extra, '--cfg-options', *options
    ]


def _same_content(path, expected) -> None:
    a, b = load_exit_dataset(str(path)), load_exit_dataset(str(expected))
    for name in ('image_ids', 'exits', 'ap', 'ap50', 'ap75', 'gate_inputs'):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for data in (a, b):
        data.meta.pop('code_version')
    assert a.meta == b.meta


def test_resume_of_a_finished_derivation(tiny_eco_dino_derived,
                                         tiny_eco_dino_checkpoint,
                                         synthetic_detection_cfg_options,
                                         run_tool, tmp_path):
    """The detection provenance (model, dataset, metrics) reads back
    equal: --resume keeps every image and derives none."""
    out = tmp_path / 'derived.npz'
    shutil.copy(tiny_eco_dino_derived, out)
    proc = run_tool(
        'tools/eco/derive_exit_dataset.py',
        *_derive_args(tiny_eco_dino_checkpoint,
                      synthetic_detection_cfg_options, out, '--resume'),
        env=dict(OMP_NUM_THREADS='1'))
    num_images = len(load_exit_dataset(tiny_eco_dino_derived))
    assert (f'deriving exits {EXITS} of 0 of {num_images} images'
            in proc.stdout + proc.stderr)
    _same_content(out, tiny_eco_dino_derived)


@pytest.mark.heavy
def test_two_gloo_processes_equal_one(tiny_eco_dino_derived,
                                      tiny_eco_dino_checkpoint,
                                      synthetic_detection_cfg_options,
                                      run_tool, tmp_path):
    out = tmp_path / 'derived.npz'
    proc = run_tool(
        'tools/eco/derive_exit_dataset.py',
        *_derive_args(tiny_eco_dino_checkpoint,
                      synthetic_detection_cfg_options, out,
                      '--save-interval', '3', '--launcher', 'pytorch'),
        env=dict(OMP_NUM_THREADS='1'),
        nproc=2)
    assert 'on 2 rank(s)' in proc.stdout + proc.stderr
    _same_content(out, tiny_eco_dino_derived)
