# Copyright (c) The proscale Authors. All rights reserved.
import json

import mmcv
import numpy as np
import pytest
from analysis_helpers import (REPO_ROOT, SHAPE, TINY_BASELINE, TINY_PROSCALE,
                              expected_msda_sampling, load_tool)

from proscale.analysis import (build_analysis_model, load_analysis_config)
from proscale.datasets import generate_synthetic_panoptic
from proscale.ops import is_available

GET_FLOPS_KEYS = {
    'total', 'backbone', 'encoder', 'decoder', 'msda_sampling', 'params',
    'num_images', 'shape'
}
BENCHMARK_KEYS = {'median_s', 'min_s', 'max_s', 'ratio', 'peak_mem_mb'}
FLOP_KEYS = ('total', 'backbone', 'encoder', 'decoder', 'msda_sampling')
# A small mmseg Mask2Former (mmseg's own Mask2FormerHead, whose forward needs
# the data samples, mmseg#3267) on a folder of images.
MMSEG_CONFIG = """
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py'
custom_imports = dict(imports=['proscale'])
dims = 32
attn = dict(embed_dims=dims, num_heads=2)
ffn = dict(embed_dims=dims, feedforward_channels=64)
model = dict(
    backbone=dict(depth=18, init_cfg=None, norm_cfg=dict(type='BN')),
    decode_head=dict(
        in_channels=[64, 128, 256, 512],
        feat_channels=dims,
        out_channels=dims,
        num_queries=8,
        pixel_decoder=dict(
            norm_cfg=dict(type='GN', num_groups=8),
            encoder=dict(
                num_layers=2,
                layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn)),
            positional_encoding=dict(num_feats=dims // 2)),
        positional_encoding=dict(num_feats=dims // 2),
        transformer_decoder=dict(
            num_layers=2,
            layer_cfg=dict(
                self_attn_cfg=attn, cross_attn_cfg=attn, ffn_cfg=ffn))))
test_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='BaseSegDataset',
        data_root='{root}',
        data_prefix=dict(img_path='img', seg_map_path='ann'),
        img_suffix='.png',
        seg_map_suffix='.png',
        metainfo=dict(classes=('a', 'b')),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')
        ]))
"""
MMSEG_IMAGE_SHAPE = (64, 96)


@pytest.fixture(scope='module')
def get_flops():
    return load_tool('get_flops')


@pytest.fixture(scope='module')
def benchmark_tool():
    return load_tool('benchmark')


@pytest.fixture(scope='module')
def mmseg_config(tmp_path_factory):
    root = tmp_path_factory.mktemp('mmseg_data')
    (root / 'img').mkdir()
    (root / 'ann').mkdir()
    mmcv.imwrite(
        np.full(MMSEG_IMAGE_SHAPE + (3, ), 128, np.uint8),
        str(root / 'img' / 'a.png'))
    mmcv.imwrite(
        np.zeros(MMSEG_IMAGE_SHAPE, np.uint8), str(root / 'ann' / 'a.png'))
    config = root / 'mask2former_tiny_mmseg.py'
    config.write_text(MMSEG_CONFIG.replace('{root}', str(root)))
    return str(config)


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_get_flops_shape_on_tiny_proscale(get_flops, tmp_path,
                                          tiny_baseline_flops):
    out = tmp_path / 'flops.json'
    config = str(REPO_ROOT / TINY_PROSCALE)
    get_flops.main([config, '--shape', *map(str, SHAPE), '--json', str(out)])
    result = _read(out)
    assert set(result) == GET_FLOPS_KEYS
    assert result['shape'] == list(SHAPE)
    assert result['num_images'] == 1
    model = build_analysis_model(load_analysis_config(config))
    sampling = expected_msda_sampling(model.panoptic_head.pixel_decoder, SHAPE)
    assert result['msda_sampling'] * 1e9 == pytest.approx(sampling, rel=1e-9)
    # Same backbone and decoder as the baseline, a cheaper encoder.
    for key in ('backbone', 'decoder'):
        assert result[key] == pytest.approx(tiny_baseline_flops[key], rel=1e-9)
    assert result['encoder'] < tiny_baseline_flops['encoder']


def test_get_flops_averages_test_images(get_flops, tmp_path,
                                        tiny_baseline_flops):
    """Test images are counted at their size; fewer if the set runs out."""
    root = tmp_path / 'synthetic'
    generate_synthetic_panoptic(
        str(root), num_train=1, num_val=1, image_size=SHAPE[0])
    out = tmp_path / 'flops.json'
    get_flops.main([
        str(REPO_ROOT / TINY_BASELINE), '--num-images', '2', '--cfg-options',
        f'test_dataloader.dataset.data_root={root}/', '--json',
        str(out)
    ])
    result = _read(out)
    assert set(result) == GET_FLOPS_KEYS
    assert result['shape'] is None
    assert result['num_images'] == 1
    for key in FLOP_KEYS + ('params', ):
        assert result[key] == pytest.approx(tiny_baseline_flops[key], rel=1e-9)


def test_get_flops_on_mmseg_mask2former(get_flops, mmseg_config, tmp_path):
    out = tmp_path / 'flops.json'
    get_flops.main([mmseg_config, '--num-images', '1', '--json', str(out)])
    result = _read(out)
    assert set(result) == GET_FLOPS_KEYS
    assert result['num_images'] == 1
    model = build_analysis_model(load_analysis_config(mmseg_config))
    sampling = expected_msda_sampling(model.decode_head.pixel_decoder,
                                      MMSEG_IMAGE_SHAPE)
    assert result['msda_sampling'] * 1e9 == pytest.approx(sampling, rel=1e-9)
    assert min(result[key] for key in FLOP_KEYS) > 0


def test_benchmark_encoders_side_by_side(benchmark_tool, tmp_path):
    out = tmp_path / 'latency.json'
    configs = [str(REPO_ROOT / c) for c in (TINY_BASELINE, TINY_PROSCALE)]
    benchmark_tool.main([
        *configs, '--shape', *map(str, SHAPE), '--part', 'encoder', '--runs',
        '2', '--warmup', '1', '--threads', '1', '--json',
        str(out)
    ])
    result = _read(out)
    assert list(result) == configs
    for timings in result.values():
        assert set(timings) == BENCHMARK_KEYS
        assert 0 < timings['min_s'] <= timings['median_s'] <= timings['max_s']
        assert timings['peak_mem_mb'] >= 0
    first, second = result.values()
    assert first['ratio'] == 1.0
    assert second['ratio'] == pytest.approx(second['median_s'] /
                                            first['median_s'])


@pytest.mark.skipif(not is_available(), reason='proscale._ext not built')
def test_benchmark_compares_fused_and_pytorch_paths(benchmark_tool, capsys):
    config = str(REPO_ROOT / TINY_PROSCALE)
    result = benchmark_tool.main([
        config, '--shape', *map(str, SHAPE), '--part', 'encoder', '--runs',
        '1', '--warmup', '0', '--compare-fused'
    ])
    fused, pytorch = f'{config} [fused]', f'{config} [pytorch]'
    assert list(result['timings']) == [fused, pytorch]
    assert result['fused_speedup'][config] == pytest.approx(
        result['timings'][pytorch]['median_s'] /
        result['timings'][fused]['median_s'])
    assert 'fused' in capsys.readouterr().out


def test_benchmark_mmseg_model(benchmark_tool, mmseg_config):
    result = benchmark_tool.main([
        mmseg_config, '--shape', *map(str, SHAPE), '--runs', '1', '--warmup',
        '0'
    ])
    assert set(result[mmseg_config]) == BENCHMARK_KEYS


@pytest.mark.parametrize('tool, argv', [
    ('get_flops', ['c.py', '--shape', '64', '64', '--num-images', '2']),
    ('benchmark', ['c.py', 'c.py', '--shape', '64', '64']),
    ('benchmark', ['c.py', '--shape', '64', '64', '--runs', '0']),
    ('benchmark', ['c.py']),
    ('benchmark_contention', ['--iters', '0']),
])
def test_tools_reject_bad_arguments(tool, argv):
    with pytest.raises(SystemExit) as error:
        load_tool(tool).parse_args(argv)
    assert error.value.code == 2


@pytest.mark.parametrize('shape', [('0', '0'), ('-64', '64'), ('64', 'x')])
def test_get_flops_refuses_bad_shapes(shape, capsys):
    with pytest.raises(SystemExit) as error:
        load_tool('get_flops').parse_args(['c.py', '--shape', *shape])
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    assert 'argument --shape: must be an integer >= 1, got' in err


def test_get_flops_names_missing_config(get_flops, tmp_path, capsys):
    with pytest.raises(SystemExit):
        get_flops.main([str(tmp_path / 'missing.py'), '--shape', '64', '64'])
    assert 'missing.py' in capsys.readouterr().err


def test_benchmark_contention_names_missing_config(tmp_path, capsys):
    work_dir = tmp_path / 'work'
    with pytest.raises(SystemExit) as error:
        load_tool('benchmark_contention').main(
            ['--config', str(tmp_path / 'missing.py'), '--work-dir',
             str(work_dir)])
    assert error.value.code == 2
    assert 'missing.py' in capsys.readouterr().err
    assert not work_dir.exists()
