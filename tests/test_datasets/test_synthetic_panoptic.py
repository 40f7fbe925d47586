# Copyright (c) The proscale Authors. All rights reserved.
import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image
from panopticapi.evaluation import pq_compute_single_core
from panopticapi.utils import rgb2id
from pycocotools.coco import COCO

from proscale.datasets import (SYNTHETIC_PANOPTIC_METAINFO,
                               generate_synthetic_panoptic)
from proscale.datasets.synthetic_panoptic import (STUFF_CLASSES,
                                                  THING_CLASSES,
                                                  _SceneSampler)

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO_ROOT / 'configs/_base_/datasets/synthetic_panoptic.py'
CLI = 'tools/dataset_converters/generate_synthetic_panoptic.py'


def _load(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _tree(root: Path) -> dict:
    """Map every file under ``root`` to its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob('*')) if path.is_file()
    }


def _panoptic_png(root: Path, split: str, file_name: str) -> np.ndarray:
    """Read a panoptic PNG the way panopticapi does; returns segment ids."""
    path = root / 'annotations' / f'panoptic_{split}' / file_name
    return rgb2id(np.array(Image.open(path), dtype=np.uint32))


def _bbox(mask: np.ndarray) -> list:
    ys, xs = np.nonzero(mask)
    return [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1)
    ]


def test_deterministic_per_seed(tmp_path):
    kwargs = dict(num_train=3, num_val=2, image_size=48)
    generate_synthetic_panoptic(str(tmp_path / 'a'), seed=3, **kwargs)
    generate_synthetic_panoptic(str(tmp_path / 'b'), seed=3, **kwargs)
    generate_synthetic_panoptic(str(tmp_path / 'c'), seed=4, **kwargs)
    generate_synthetic_panoptic(
        str(tmp_path / 'd'), seed=3, num_train=2, num_val=1, image_size=48)
    same, other = _tree(tmp_path / 'a'), _tree(tmp_path / 'c')
    assert same == _tree(tmp_path / 'b')
    assert same['train/000000000001.jpg'] != other['train/000000000001.jpg']
    # Image i of a split does not depend on how many images are generated.
    fewer = _tree(tmp_path / 'd')
    for name in ('train/000000000002.jpg', 'val/000000000001.jpg',
                 'annotations/panoptic_train/000000000002.png'):
        assert fewer[name] == same[name]
    assert sorted(os.listdir(tmp_path)) == ['a', 'b', 'c', 'd']


def test_context_mode_is_deterministic(tmp_path):
    kwargs = dict(num_train=4, num_val=2, image_size=48, seed=3)
    manifest = generate_synthetic_panoptic(
        str(tmp_path / 'a'), context_fraction=0.5, **kwargs)
    generate_synthetic_panoptic(
        str(tmp_path / 'b'), context_fraction=0.5, **kwargs)
    generate_synthetic_panoptic(str(tmp_path / 'plain'), **kwargs)
    context = _tree(tmp_path / 'a')
    assert context == _tree(tmp_path / 'b')
    assert manifest['context_fraction'] == 0.5
    # the context choice has its own stream: the other images are those of
    # the plain generator
    plain = _tree(tmp_path / 'plain')
    images = [name for name in plain if name.endswith('.jpg')]
    same = [name for name in images if plain[name] == context[name]]
    assert 0 < len(same) < len(images)
    # the annotation files mark the context images: exactly those that
    # differ from the plain dataset's; the plain dataset has no such field
    assert manifest['context_key'] == 'context'
    for split in ('train', 'val'):
        infos = _load(tmp_path / 'a' / 'annotations' /
                      f'panoptic_{split}.json')['images']
        marked = {f"{split}/{info['file_name']}": info['context']
                  for info in infos}
        assert marked == {
            name: name not in same
            for name in images if name.startswith(split)
        }
        assert all('context' not in info for info in _load(
            tmp_path / 'plain' / 'annotations' /
            f'panoptic_{split}.json')['images'])
    with pytest.raises(ValueError, match='context_fraction'):
        generate_synthetic_panoptic(
            str(tmp_path / 'x'), context_fraction=1.5, **kwargs)


def test_context_images_need_the_distant_cue():
    size = 96
    sampler = _SceneSampler(size, context_fraction=1.0)
    pictures = []
    for stuff_idx in range(len(STUFF_CLASSES)):
        image = np.zeros((size, size, 3))
        seg = np.zeros((size, size), dtype=np.int64)
        labels = {}
        cue = sampler._paint_context_stuff(
            np.random.default_rng(5), 0.5, stuff_idx, image, seg, 0, labels)
        assert labels == {1: len(THING_CLASSES) + stuff_idx + 1}
        assert (seg == 1).all()
        pictures.append((image, cue))
    # away from the cue the pixels are the same whatever the stuff class,
    # and grey
    image, cue = pictures[0]
    for other, other_cue in pictures[1:]:
        assert np.array_equal(other_cue, cue)
        assert np.array_equal(other[~cue], image[~cue])
        assert not np.array_equal(other[cue], image[cue])
    assert np.ptp(image[~cue], axis=1).max() == 0
    # the cue is a corner patch: most of the segment lies over half the
    # image side away from it
    ys, xs = np.nonzero(cue)
    assert cue.sum() == (size // 6)**2
    assert {ys.min(), ys.max() + 1} & {0, size}
    assert {xs.min(), xs.max() + 1} & {0, size}
    yy, xx = np.mgrid[0:size, 0:size]
    distance = np.hypot(yy - ys.mean(), xx - xs.mean())
    assert (distance > size / 2).mean() > 0.5

    # in whole scenes the things leave the cue visible
    for index in range(4):
        context_stuff = sampler.draw_context(np.random.default_rng(100))
        image, seg, segments = sampler(
            np.random.default_rng(index), 1, context_stuff)
        stuff = [s for s in segments if s['category_id'] > len(THING_CLASSES)]
        assert len(stuff) == 1
        corners = [
            seg[:size // 6, :size // 6], seg[:size // 6, -(size // 6):],
            seg[-(size // 6):, :size // 6], seg[-(size // 6):, -(size // 6):]
        ]
        assert any((corner == stuff[0]['id']).all() for corner in corners)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_panoptic_files_pass_panopticapi(synthetic_data_root, split):
    root = Path(synthetic_data_root)
    panoptic = _load(root / 'annotations' / f'panoptic_{split}.json')
    categories = {cat['id']: cat for cat in panoptic['categories']}
    meta = SYNTHETIC_PANOPTIC_METAINFO
    assert [cat['name']
            for cat in panoptic['categories']] == list(meta['classes'])
    for cat in panoptic['categories']:
        assert cat['isthing'] == int(cat['name'] in meta['thing_classes'])
        assert cat['supercategory']
    images = {img['id']: img for img in panoptic['images']}
    assert len(panoptic['annotations']) == len(images) > 0

    for ann in panoptic['annotations']:
        img = images[ann['image_id']]
        rgb = Image.open(root / split / img['file_name'])
        assert rgb.mode == 'RGB'
        assert rgb.size == (img['width'], img['height'])
        seg = _panoptic_png(root, split, ann['file_name'])
        assert seg.shape == (img['height'], img['width'])
        ids = {info['id'] for info in ann['segments_info']}
        assert set(np.unique(seg).tolist()) - {0} == ids
        for info in ann['segments_info']:
            mask = seg == info['id']
            assert info['area'] == int(mask.sum())
            assert info['bbox'] == _bbox(mask)
            assert info['category_id'] in categories
            assert info['iscrowd'] == 0
        stuff = [
            info['category_id'] for info in ann['segments_info']
            if not categories[info['category_id']]['isthing']
        ]
        assert len(stuff) == len(set(stuff)), 'one segment per stuff class'

    # panopticapi's own reader and sanity checks: ground truth vs itself.
    gt_folder = str(root / 'annotations' / f'panoptic_{split}')
    stat = pq_compute_single_core(0, [(ann, copy.deepcopy(ann))
                                      for ann in panoptic['annotations']],
                                  gt_folder, gt_folder, categories)
    pq, _ = stat.pq_average(categories, isthing=None)
    assert pq['pq'] == pytest.approx(1.0)


def test_instance_json_matches_panoptic(synthetic_data_root):
    root = Path(synthetic_data_root)
    coco = COCO(str(root / 'annotations' / 'instances_val.json'))
    panoptic = _load(root / 'annotations' / 'panoptic_val.json')
    thing_ids = {cat['id'] for cat in panoptic['categories'] if cat['isthing']}
    assert set(coco.getCatIds()) == thing_ids
    num_things = 0
    for ann in panoptic['annotations']:
        seg = _panoptic_png(root, 'val', ann['file_name'])
        for info in ann['segments_info']:
            if info['category_id'] not in thing_ids:
                continue
            num_things += 1
            inst = coco.loadAnns([info['id']])[0]
            assert inst['image_id'] == ann['image_id']
            assert inst['category_id'] == info['category_id']
            assert inst['iscrowd'] == 0
            assert inst['area'] == info['area']
            assert inst['bbox'] == info['bbox']
            np.testing.assert_array_equal(
                coco.annToMask(inst).astype(bool), seg == info['id'])
    assert len(coco.getAnnIds()) == num_things > 0


def test_difficulty_is_broad(synthetic_data_root):
    panoptic = _load(
        Path(synthetic_data_root) / 'annotations' / 'panoptic_train.json')
    thing_ids = {cat['id'] for cat in panoptic['categories'] if cat['isthing']}
    counts, mean_areas = [], []
    for ann in panoptic['annotations']:
        areas = [
            info['area'] for info in ann['segments_info']
            if info['category_id'] in thing_ids
        ]
        counts.append(len(areas))
        if areas:
            mean_areas.append(np.mean(areas))
    assert min(counts) <= 2 and max(counts) >= 6
    assert max(mean_areas) > 5 * min(mean_areas)


def test_mmdet_dataset_uses_shipped_metainfo(synthetic_data_root):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(BASE_CONFIG))
    shipped = {
        key: [tuple(v) if isinstance(v, list) else v for v in value]
        for key, value in cfg.metainfo.items()
    }
    expected = {
        key: [tuple(v) if isinstance(v, list) else v for v in value]
        for key, value in SYNTHETIC_PANOPTIC_METAINFO.items()
    }
    assert shipped == expected

    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = synthetic_data_root
    dataset = DATASETS.build(dataset_cfg)
    assert dataset.metainfo['classes'] == SYNTHETIC_PANOPTIC_METAINFO[
        'classes']
    assert len(dataset) > 0
    sample = dataset[0]['data_samples']
    info = dataset.get_data_info(0)
    num_things = sum(seg['is_thing'] for seg in info['segments_info'])
    assert len(sample.gt_instances) == num_things
    assert sample.gt_instances.masks.masks.shape[0] == num_things
    labels = sample.gt_sem_seg.sem_seg.unique().tolist()
    assert set(labels) <= set(range(len(dataset.metainfo['classes']))) | {255}


def test_refuses_to_clobber(tmp_path):
    out = tmp_path / 'data'
    first = generate_synthetic_panoptic(
        str(out), num_train=1, num_val=1, image_size=32)
    stamp = (out / 'train/000000000001.jpg').stat().st_mtime_ns
    assert generate_synthetic_panoptic(
        str(out), num_train=1, num_val=1, image_size=32) == first
    assert (out / 'train/000000000001.jpg').stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match=str(out)):
        generate_synthetic_panoptic(
            str(out), num_train=2, num_val=1, image_size=32)
    generate_synthetic_panoptic(
        str(out), num_train=2, num_val=1, image_size=32, force=True)
    assert len(os.listdir(out / 'train')) == 2
    assert os.listdir(tmp_path) == ['data'], 'no temporary folder left'
    with pytest.raises(ValueError, match='num_train'):
        generate_synthetic_panoptic(str(tmp_path / 'x'), num_train=0)


def test_cli_refuses_to_clobber(tmp_path, run_tool_in_process):
    out = tmp_path / 'taken'
    out.mkdir()
    (out / 'notes.txt').write_text('not a dataset')
    code, stderr = run_tool_in_process(CLI, out, '--num-train', 1, '--num-val',
                                       1)
    assert code == 2
    assert str(out) in stderr and '--force' in stderr
    assert os.listdir(out) == ['notes.txt']
    code, _ = run_tool_in_process(CLI, out, '--num-train', 1, '--num-val', 1,
                                  '--image-size', 32, '--force')
    assert code == 0
    assert sorted(os.listdir(out)) == [
        'annotations', 'synthetic_panoptic.json', 'train', 'val'
    ]


def test_cli_context_fraction(tmp_path, run_tool_in_process):
    out = tmp_path / 'context'
    code, _ = run_tool_in_process(CLI, out, '--num-train', 1, '--num-val', 1,
                                  '--image-size', 32, '--context-fraction',
                                  0.5)
    assert code == 0
    assert _load(out / 'synthetic_panoptic.json')['context_fraction'] == 0.5
    code, stderr = run_tool_in_process(CLI, tmp_path / 'bad', '--num-train',
                                       1, '--num-val', 1,
                                       '--context-fraction', 2)
    assert code == 2 and 'context_fraction' in stderr
    assert not (tmp_path / 'bad').exists()
