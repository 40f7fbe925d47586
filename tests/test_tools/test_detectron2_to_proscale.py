# Copyright (c) The proscale Authors. All rights reserved.
"""tools/model_converters/detectron2_to_proscale.py on the tiny reference
checkpoints: .pth and .pkl in, a checked mmengine checkpoint out; bad input
gives one clear line and writes nothing."""
import argparse
import hashlib
import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / 'test_converters'))
from converter_helpers import fixture_path, tiny_cfg  # noqa: E402

from proscale.converters import (CONVERTER_VERSION,  # noqa: E402
                                 recognize)
from proscale.converters.checkpoint import build_model  # noqa: E402

TOOL = 'tools/model_converters/detectron2_to_proscale.py'
PROSCALE = 'tiny_r50style_proscale.pth'
ECO = 'tiny_swin_eco-m2f.pth'


def write_config(name: str, kind: str, folder: Path) -> str:
    fixture = torch.load(fixture_path(name), weights_only=True)
    arch = recognize({k: v.shape for k, v in fixture['model'].items()})
    path = folder / f'{kind}_tiny.py'
    tiny_cfg(fixture['settings'], arch, kind).dump(str(path))
    return str(path)


@pytest.fixture(scope='module')
def proscale_config(tmp_path_factory) -> str:
    return write_config(PROSCALE, 'proscale',
                        tmp_path_factory.mktemp('configs'))


def test_pth_and_pkl(tmp_path, proscale_config, run_tool_in_process):
    src = fixture_path(PROSCALE)
    dst = tmp_path / 'out' / 'converted.pth'
    code, err = run_tool_in_process(TOOL, src, dst, '--config',
                                    proscale_config)
    assert (code, err) == (0, '')
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['source'] == str(src)
    assert ckpt['meta']['sha256'] == hashlib.sha256(
        src.read_bytes()).hexdigest()
    assert ckpt['meta']['converter_version'] == CONVERTER_VERSION
    assert len(ckpt['state_dict']) == 471
    model = build_model(Config.fromfile(proscale_config))
    load_checkpoint(model, str(dst), strict=True)

    # Mask2Former's model-zoo format: a pickle of numpy arrays
    model_dict = torch.load(src, weights_only=True)['model']
    pkl = tmp_path / 'model.pkl'
    with open(pkl, 'wb') as f:
        pickle.dump(
            dict(model={k: v.numpy()
                        for k, v in model_dict.items()},
                 __author__='test'), f)
    dst_pkl = tmp_path / 'from_pkl.pth'
    code, err = run_tool_in_process(TOOL, pkl, dst_pkl, '--config',
                                    proscale_config)
    assert (code, err) == (0, '')
    from_pkl = torch.load(dst_pkl, weights_only=True)['state_dict']
    assert from_pkl.keys() == ckpt['state_dict'].keys()
    assert all(
        torch.equal(from_pkl[k], v) for k, v in ckpt['state_dict'].items())


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    for fragment in fragments:
        assert fragment in lines[0], err


def test_truncated_file(tmp_path, proscale_config, run_tool_in_process):
    data = fixture_path(PROSCALE).read_bytes()
    src = tmp_path / 'truncated.pth'
    src.write_bytes(data[:len(data) // 2])
    out = tmp_path / 'out'
    out.mkdir()
    code, err = run_tool_in_process(TOOL, src, out / 'x.pth', '--config',
                                    proscale_config)
    assert_one_line_error(code, err, str(src), 'not a readable checkpoint')
    assert os.listdir(out) == []


def test_wrong_architecture(tmp_path, proscale_config, run_tool_in_process):
    out = tmp_path / 'out'
    out.mkdir()
    code, err = run_tool_in_process(TOOL, fixture_path(ECO), out / 'x.pth',
                                    '--config', proscale_config)
    assert_one_line_error(code, err, 'ECO-M2F: Swin', 'does not fit',
                          'converted key(s) not in the model',
                          'shape mismatch')
    assert os.listdir(out) == []


def test_missing_key(tmp_path, proscale_config, run_tool_in_process):
    fixture = torch.load(fixture_path(PROSCALE), weights_only=True)
    missing = 'sem_seg_head.predictor.transformer_ffn_layers.2.norm.bias'
    del fixture['model'][missing]
    src = tmp_path / 'incomplete.pth'
    torch.save(dict(model=fixture['model']), src)
    out = tmp_path / 'out'
    out.mkdir()
    code, err = run_tool_in_process(TOOL, src, out / 'x.pth', '--config',
                                    proscale_config)
    assert_one_line_error(
        code, err, '1 key(s) of the model missing',
        'panoptic_head.transformer_decoder.layers.2.norms.2.bias')
    assert os.listdir(out) == []


def test_unknown_key(tmp_path, proscale_config, run_tool_in_process):
    fixture = torch.load(fixture_path(PROSCALE), weights_only=True)
    fixture['model']['sem_seg_head.predictor.extra.weight'] = torch.zeros(1)
    src = tmp_path / 'extra.pth'
    torch.save(dict(model=fixture['model']), src)
    code, err = run_tool_in_process(TOOL, src, tmp_path / 'x.pth',
                                    '--config', proscale_config)
    assert_one_line_error(code, err, 'no place in the converted model',
                          'sem_seg_head.predictor.extra.weight')
    assert not (tmp_path / 'x.pth').exists()


def test_no_default_config_for_tiny_model(tmp_path, run_tool_in_process):
    code, err = run_tool_in_process(TOOL, fixture_path(PROSCALE),
                                    tmp_path / 'x.pth')
    assert_one_line_error(code, err, 'no config of this project',
                          '--config')


def test_training_state_needs_trust(tmp_path, proscale_config,
                                    run_tool_in_process):
    """detectron2 trainers may save objects a safe load refuses."""
    fixture = torch.load(fixture_path(PROSCALE), weights_only=True)
    src = tmp_path / 'with_trainer.pth'
    torch.save(
        dict(
            model=fixture['model'],
            trainer=argparse.Namespace(iteration=1),
            iteration=1), src)
    dst = tmp_path / 'x.pth'
    code, err = run_tool_in_process(TOOL, src, dst, '--config',
                                    proscale_config)
    assert_one_line_error(code, err, 'a safe load refuses', '--trust-pickle')
    assert not dst.exists()
    code, err = run_tool_in_process(TOOL, src, dst, '--config',
                                    proscale_config, '--trust-pickle')
    assert (code, err) == (0, '')
    assert dst.is_file()


def test_full_size_release_with_default_config(tmp_path, run_tool_in_process):
    """The released ECO-M2F layout (constant values, stored as stride-0
    views to keep the file small) goes to the gated Swin-T COCO config."""
    with open(fixture_path('keys_swin-t_eco-m2f_coco.json')) as f:
        keys = json.load(f)['keys']
    one = torch.ones(1)
    src = tmp_path / 'eco-m2f_swin-t_coco.pth'
    torch.save(
        dict(model={k['name']: one.expand(k['shape'])
                    for k in keys}), src)
    dst = tmp_path / 'converted.pth'
    code, err = run_tool_in_process(TOOL, src, dst)
    assert (code, err) == (0, '')
    meta = torch.load(dst, weights_only=True)['meta']
    assert meta['config'] == ('proscale::eco_m2f/eco-m2f-gated_swin-t-p4-w7-'
                              '224_8xb2-lsj-50e_coco-panoptic.py')
    assert meta['source_model'].startswith('ECO-M2F: Swin (embed 96')
