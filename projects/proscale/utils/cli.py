"""Helpers shared by the command-line tools: config loading and clear errors.

The tools stay thin (argument parsing + these calls). Errors caused by the
user's input (a missing data root, a typo in ``--cfg-options``, an unreadable
image or annotation file) are reported as one line naming the file, key or
value at fault instead of a deep traceback.
"""
import difflib
import json
import os
import os.path as osp
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

from mmengine.config import Config, ConfigDict

from .compat import check_package_config_support

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# Keys of a config (or of a dataset config) that point at files or folders.
_PATH_KEYS = ('ann_file', 'data_root')


class UserInputError(ValueError):
    """An error in the user's input (config, files, command line)."""


def _lookup(node: Any, part: str) -> Any:
    """Return ``node[part]`` for a dict or list node, or raise KeyError."""
    if isinstance(node, (list, tuple)):
        if not part.isdigit() or int(part) >= len(node):
            raise KeyError(part)
        return node[int(part)]
    if isinstance(node, dict) and part in node:
        return node[part]
    raise KeyError(part)


def check_cfg_option_keys(cfg: Config, options: Dict[str, Any]) -> None:
    """Check that every ``--cfg-options`` key names an existing config key.

    ``Config.merge_from_dict`` silently adds unknown keys, so a typo such as
    ``train_cfg.max_iter=10`` would be ignored.

    Args:
        cfg (Config): The loaded config.
        options (dict): Dotted keys to values, as parsed by ``DictAction``.

    Raises:
        UserInputError: Naming the first unknown key and close matches.
    """
    for dotted_key in options:
        node: Any = cfg._cfg_dict
        parts = dotted_key.split('.')
        for depth, part in enumerate(parts):
            try:
                node = _lookup(node, part)
            except KeyError:
                known = list(node.keys()) if isinstance(node, dict) else []
                close = difflib.get_close_matches(part, known, n=3)
                prefix = '.'.join(parts[:depth])
                hint = (f' Did you mean: ' + ', '.join(
                    f"'{'.'.join(filter(None, [prefix, c]))}'"
                    for c in close) + '?') if close else ''
                raise UserInputError(
                    f"--cfg-options: key '{dotted_key}' is not in the config "
                    f"('{part}' not found under "
                    f"'{prefix or '<root>'}').{hint}") from None


def load_config(path: str,
                cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    """Load a config file and apply validated ``--cfg-options``.

    Args:
        path (str): The config file.
        cfg_options (dict, optional): Overrides from the command line.

    Returns:
        Config: The merged config.
    """
    if not osp.isfile(path):
        raise UserInputError(f'config file not found: {path}')
    check_package_config_support()
    cfg = Config.fromfile(path)
    if cfg_options:
        check_cfg_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    return cfg


def _dataset_cfgs(cfg: Config) -> Iterator[tuple]:
    """Yield ``(name, dataset_cfg)`` for every dataloader of a config."""
    for loader_key in DATALOADER_KEYS:
        loader = cfg.get(loader_key)
        if not loader or 'dataset' not in loader:
            continue
        datasets = [loader['dataset']]
        while datasets:
            dataset = datasets.pop()
            for inner in ('dataset', 'datasets'):
                child = dataset.get(inner)
                if isinstance(child, (dict, ConfigDict)):
                    datasets.append(child)
                elif isinstance(child, (list, tuple)):
                    datasets.extend(child)
            yield f'{loader_key}.dataset', dataset


def _dataset_paths(dataset: dict) -> List[tuple]:
    """Return ``(key, path)`` pairs a dataset config reads from disk."""
    data_root = dataset.get('data_root') or ''
    paths = []
    if data_root:
        paths.append(('data_root', data_root))
    if dataset.get('ann_file'):
        paths.append(('ann_file', osp.join(data_root, dataset['ann_file'])))
    for key, prefix in (dataset.get('data_prefix') or {}).items():
        if isinstance(prefix, str) and prefix:
            paths.append((f'data_prefix.{key}', osp.join(data_root, prefix)))
    return paths


def check_dataset_paths(cfg: Config, loader_keys=DATALOADER_KEYS) -> None:
    """Check that the files and folders the datasets read exist.

    Args:
        cfg (Config): The config.
        loader_keys (tuple[str]): Which dataloaders to check.

    Raises:
        UserInputError: Naming the config key and the missing path.
    """
    for name, dataset in _dataset_cfgs(cfg):
        if not name.startswith(tuple(loader_keys)):
            continue
        for key, path in _dataset_paths(dataset):
            if not osp.exists(path):
                raise UserInputError(
                    f"{name}.{key}: '{path}' does not exist (see the README "
                    "for data preparation, or override it with --cfg-options "
                    f'{name}.{key}=...).')


def _unreadable_annotation(cfg: Config) -> Optional[str]:
    """Return the first annotation file of a config that is not valid JSON."""
    for name, dataset in _dataset_cfgs(cfg):
        for key, path in _dataset_paths(dataset):
            if key == 'ann_file' and path.endswith('.json'):
                try:
                    with open(path) as f:
                        json.load(f)
                except (OSError, ValueError) as error:
                    return f"{name}.ann_file '{path}': {error}"
    return None


def _last_line(message: str) -> str:
    """Return the original error of a message re-raised by a worker."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else message


def _is_image_load_failure(error: BaseException) -> bool:
    return 'failed to load image' in str(error)


@contextmanager
def report_user_errors(cfg: Optional[Config] = None) -> Iterator[None]:
    """Turn input errors into one clear line on stderr and exit code 2.

    Set ``PROSCALE_DEBUG=1`` to get the full traceback instead.

    Args:
        cfg (Config, optional): The config, used to name an unreadable
            annotation file when a JSON decoding error surfaces.
    """
    try:
        yield
    except (UserInputError, FileNotFoundError, IsADirectoryError,
            json.JSONDecodeError, AssertionError, OSError) as error:
        if os.environ.get('PROSCALE_DEBUG'):
            raise
        if isinstance(error, AssertionError) and not _is_image_load_failure(
                error):
            raise
        message = _last_line(str(error))
        if isinstance(error, json.JSONDecodeError) and cfg is not None:
            message = _unreadable_annotation(cfg) or message
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)
