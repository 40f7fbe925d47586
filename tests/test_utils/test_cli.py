# Copyright (c) The proscale Authors. All rights reserved.
import argparse
import json
import os

import pytest
from mmengine.config import Config

from proscale.utils.cli import (
    DEFAULT_FLOPS_IMAGES, UserInputError, add_cfg_options_argument,
    add_flops_images_argument, add_launcher_arguments, check_cfg_option_keys,
    check_checkpoint, check_dataset_paths, dump_json, load_config,
    parse_launcher_args, report_user_errors, set_work_dir)


@pytest.fixture
def config(tmp_path):
    root = tmp_path / 'data'
    (root / 'images').mkdir(parents=True)
    (root / 'ann.json').write_text('{"images": []}')
    return Config(
        dict(
            train_cfg=dict(max_iters=10),
            model=dict(backbone=dict(depth=18)),
            train_dataloader=dict(
                dataset=dict(
                    data_root=str(root) + '/',
                    ann_file='ann.json',
                    data_prefix=dict(img='images/'),
                    pipeline=[dict(type='A', scale=1)]))))


def test_known_keys_pass(config):
    check_cfg_option_keys(
        config, {
            'train_cfg.max_iters': 3,
            'train_dataloader.dataset.pipeline.0.scale': 2
        })


@pytest.mark.parametrize('key, named', [
    ('train_cfg.max_iter', "'train_cfg.max_iters'"),
    ('model.backbone.deph', "'model.backbone.depth'"),
    ('trian_cfg.max_iters', "'train_cfg'"),
    ('train_dataloader.dataset.pipeline.3.scale', "'3' not found"),
])
def test_typo_names_key_and_suggestion(config, key, named):
    with pytest.raises(UserInputError, match=key) as error:
        check_cfg_option_keys(config, {key: 1})
    assert named in str(error.value)


TINY_CONFIG = ('configs/mask2former/'
               'mask2former_r18_1xb4-tiny_synthetic-panoptic.py')


@pytest.mark.parametrize('key, value', [
    ('train_dataloader.dataset.indices', 8),
    ('model.backbone.frozen_stages', 1),
    ('train_dataloader.sampler.round_up', False),
])
def test_new_key_accepted_when_its_class_takes_it(key, value):
    """New keys pass when the class of the parent dict's ``type`` (here
    CocoPanopticDataset, ResNet, DefaultSampler) takes them."""
    cfg = load_config(TINY_CONFIG, {key: value})
    node = cfg
    for part in key.split('.'):
        node = node[part]
    assert node == value


@pytest.mark.parametrize('key, named', [
    ('train_cfg.max_iter', "Did you mean: 'train_cfg.max_iters'"),
    ('train_dataloader.dataset.indice',
     "nor an argument of its type 'CocoPanopticDataset'). Did you mean: "
     "'train_dataloader.dataset.indices'?"),
    ('model.backbone.frozen_stage', "'model.backbone.frozen_stages'"),
])
def test_new_key_refused_with_suggestions(key, named):
    with pytest.raises(UserInputError, match=key) as error:
        load_config(TINY_CONFIG, {key: 1})
    assert named in str(error.value)


def test_missing_paths_name_the_key(config, tmp_path):
    check_dataset_paths(config)
    config.train_dataloader.dataset.ann_file = 'missing.json'
    with pytest.raises(UserInputError,
                       match=r'train_dataloader\.dataset\.ann_file.*missing'):
        check_dataset_paths(config)


def test_load_config_missing_file(tmp_path):
    with pytest.raises(UserInputError, match='nothere.py'):
        load_config(str(tmp_path / 'nothere.py'))


def test_report_names_unreadable_annotation(config, capsys):
    ann = config.train_dataloader.dataset.data_root + 'ann.json'
    with open(ann, 'w') as f:
        f.write('{not json')
    with pytest.raises(SystemExit) as exit_info:
        with report_user_errors(config):
            with open(ann) as f:
                json.load(f)
    assert exit_info.value.code == 2
    assert 'ann.json' in capsys.readouterr().err


def test_report_keeps_tracebacks_of_bugs(config):
    with pytest.raises(AssertionError, match='a bug'):
        with report_user_errors(config):
            raise AssertionError('a bug')


def _parser():
    parser = argparse.ArgumentParser(prog='tool')
    add_cfg_options_argument(parser)
    add_launcher_arguments(parser)
    add_flops_images_argument(parser, zero_means='skips the count')
    return parser


def test_common_options(monkeypatch, capsys):
    # set first, so that monkeypatch restores the original state
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.delenv('LOCAL_RANK')
    args = parse_launcher_args(_parser(), [
        '--cfg-options', 'train_cfg.max_iters=3', '--local_rank', '1',
        '--launcher', 'pytorch'
    ])
    assert args.cfg_options == {'train_cfg.max_iters': 3}
    assert args.flops_images == DEFAULT_FLOPS_IMAGES
    assert args.launcher == 'pytorch'
    # --local_rank of torch.distributed.launch reaches mmengine ...
    assert os.environ['LOCAL_RANK'] == '1'
    # ... and torchrun's LOCAL_RANK wins over the default
    parse_launcher_args(_parser(), [])
    assert os.environ['LOCAL_RANK'] == '1'
    for bad in ('-1', 'x'):
        with pytest.raises(SystemExit):
            _parser().parse_args(['--flops-images', bad])
        assert 'must be an integer >= 0' in capsys.readouterr().err


def test_set_work_dir():
    cfg = Config(dict(work_dir=None))
    set_work_dir(cfg, 'configs/a/model_x.py', subdir='eval_exits')
    assert cfg.work_dir == './work_dirs/eval_exits/model_x'
    set_work_dir(cfg, 'configs/a/model_x.py')
    assert cfg.work_dir == './work_dirs/eval_exits/model_x'
    set_work_dir(cfg, 'configs/a/model_x.py', 'mine')
    assert cfg.work_dir == 'mine'


def test_check_checkpoint_and_dump_json(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint .*nope.pth'):
        check_checkpoint(str(tmp_path / 'nope.pth'))
    out = tmp_path / 'results.json'
    dump_json({'a': [1, 2]}, str(out))
    assert json.loads(out.read_text()) == {'a': [1, 2]}
    dump_json({'a': 1}, None)
