import json

import pytest
from mmengine.config import Config

from projects.proscale.utils.cli import (UserInputError,
                                         check_cfg_option_keys,
                                         check_dataset_paths, load_config,
                                         report_user_errors)


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
