# Copyright (c) The proscale Authors. All rights reserved.
"""Helpers shared by the command-line tools: common options, config loading,
runner building and clear errors.

The tools stay thin (argument parsing + these calls). Errors caused by the
user's input (a missing data root, a typo in ``--cfg-options``, an unreadable
image or annotation file) are reported as one line naming the file, key or
value at fault instead of a deep traceback.
"""
import argparse
import difflib
import json
import os
import os.path as osp
import sys
from contextlib import contextmanager
from typing import (Any, Callable, Dict, Iterator, List, Optional,
                    Sequence)

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .checkpoint_checks import CheckpointError, read_checkpoint
from .config_arguments import accepted_arguments
from .compat import check_package_config_support
from .distributed import init_cpu_distributed
from .package_files import resolve_config_path
from .schedule import scale_schedule
from .work_dir_lock import WorkDirBusyError

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
# Test images the per-exit GFLOPs of the ECO-M2F tools are averaged over.
DEFAULT_FLOPS_IMAGES = 10
# Keys of an evaluator config that name files or folders it reads.
_EVALUATOR_PATH_KEYS = ('ann_file', 'seg_prefix', 'gt_json_file', 'gt_folder')


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
    """Check the keys of ``--cfg-options``.

    ``Config.merge_from_dict`` silently adds unknown keys, so a typo such as
    ``train_cfg.max_iter=10`` would be ignored. A key is accepted when it
    exists in the config, or when it is new but its last part is an
    argument of the class that its parent dict builds (that dict's ``type``,
    resolved through the registries), e.g. ``indices`` of
    ``train_dataloader.dataset``.

    Args:
        cfg (Config): The loaded config.
        options (dict): Dotted keys to values, as parsed by ``DictAction``.

    Raises:
        UserInputError: Naming the first refused key and close matches
            among the existing keys and accepted arguments.
    """
    scope = cfg.get('default_scope', 'mmdet')
    for dotted_key in options:
        node: Any = cfg._cfg_dict
        parts = dotted_key.split('.')
        for depth, part in enumerate(parts):
            try:
                node = _lookup(node, part)
                continue
            except KeyError:
                pass
            is_last = depth == len(parts) - 1
            accepted = accepted_arguments(node, scope) or set()
            if is_last and part in accepted:
                break
            known = list(node.keys()) if isinstance(node, dict) else []
            close = difflib.get_close_matches(
                part, sorted(set(known) | accepted), n=3)
            prefix = '.'.join(parts[:depth])
            hint = (' Did you mean: ' + ', '.join(
                f"'{'.'.join(filter(None, [prefix, c]))}'"
                for c in close) + '?') if close else ''
            target = (f" nor an argument of its type '{node['type']}'"
                      if is_last and accepted else '')
            raise UserInputError(
                f"--cfg-options: key '{dotted_key}' is not in the config "
                f"('{part}' not found under '{prefix or '<root>'}'{target})."
                f'{hint}')


def load_config(path: str,
                cfg_options: Optional[Dict[str, Any]] = None,
                max_iters: Optional[int] = None) -> Config:
    """Load a config file, rescale its schedule and apply validated
    ``--cfg-options``.

    Args:
        path (str): The config file, or ``proscale::REL`` for a config
            shipped with the package (e.g.
            ``proscale::proscale/mask2former_r50_proscale-333_8xb2-lsj-50e_coco-panoptic.py``).
        cfg_options (dict, optional): Overrides from the command line,
            applied after the rescaling (an explicit value wins).
        max_iters (int, optional): ``--max-iters``: rescale the config's
            training schedule to this many iterations
            (:func:`~proscale.utils.schedule.scale_schedule`).

    Returns:
        Config: The merged config.
    """
    path = resolve_config_path(path)
    if not osp.isfile(path):
        raise UserInputError(f'config file not found: {path}')
    check_package_config_support()
    cfg = Config.fromfile(path)
    if max_iters is not None:
        try:
            scale_schedule(cfg, max_iters)
        except ValueError as error:
            raise UserInputError(f'{path}: {error}') from None
    if cfg_options:
        check_cfg_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    return cfg


def add_cfg_options_argument(parser: argparse.ArgumentParser) -> None:
    """Add mmdet's ``--cfg-options key=value ...`` option to a tool.

    Args:
        parser (argparse.ArgumentParser): The tool's parser; the parsed
            overrides land in ``args.cfg_options`` (for :func:`load_config`).
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value (xxx=yyy); a key must '
        'exist in the config, or be an argument of the class its parent '
        'dict builds (its type)')


def add_max_iters_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--max-iters N``: train for N iterations with the config's
    schedule rescaled to them (for :func:`load_config`).

    Args:
        parser (argparse.ArgumentParser): The tool's parser; the value lands
            in ``args.max_iters`` (None when not given).
    """
    parser.add_argument(
        '--max-iters',
        type=positive_int,
        help='train for this many iterations, with warm-up, learning-rate '
        'decay, validation and checkpoint intervals rescaled proportionally '
        "from the config's train_cfg.max_iters")


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """Add mmdet's ``--launcher`` and ``--local_rank`` options to a tool.

    Parse with :func:`parse_launcher_args`, which exports ``--local_rank``.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
    """
    parser.add_argument(
        '--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launcher_args(
        parser: argparse.ArgumentParser,
        argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse a tool's arguments and export ``LOCAL_RANK`` as mmdet does.

    Launchers that pass ``--local_rank`` (``torch.distributed.launch``)
    do not set the ``LOCAL_RANK`` environment variable mmengine reads;
    torchrun sets it, and then it is kept.

    Args:
        parser (argparse.ArgumentParser): A parser with
            :func:`add_launcher_arguments`.
        argv (Sequence[str], optional): The arguments; None reads
            ``sys.argv``.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def int_at_least(minimum: int) -> Callable[[str], int]:
    """``argparse`` type of options that take an integer >= ``minimum``.

    Args:
        minimum (int): The smallest value accepted.

    Returns:
        Callable[[str], int]: Parses the option's text; raises
        ``argparse.ArgumentTypeError`` naming the value otherwise.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f'must be an integer >= {minimum}, got {text!r}')
        return value

    return parse


non_negative_int = int_at_least(0)
positive_int = int_at_least(1)


def add_flops_images_argument(parser: argparse.ArgumentParser,
                              zero_means: str) -> None:
    """Add ``--flops-images N`` (default :data:`DEFAULT_FLOPS_IMAGES`): the
    test images each exit's GFLOPs are averaged over.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        zero_means (str): What ``--flops-images 0`` does, for the help.
    """
    parser.add_argument(
        '--flops-images',
        type=non_negative_int,
        default=DEFAULT_FLOPS_IMAGES,
        help='average the GFLOPs of each exit over this many test images '
        f'(default: {DEFAULT_FLOPS_IMAGES}; 0 {zero_means})')


def check_checkpoint(path: str) -> None:
    """Check that a checkpoint given on the command line can be read.

    Args:
        path (str): The checkpoint file.

    Raises:
        FileNotFoundError: Naming the missing file.
        CheckpointError: Naming a file that is not a readable checkpoint.
    """
    read_checkpoint(path)


def set_work_dir(cfg: Config,
                 config_path: str,
                 work_dir: Optional[str] = None,
                 subdir: str = '') -> None:
    """Set ``cfg.work_dir`` as mmdet's tools do.

    Args:
        cfg (Config): The config, updated in place.
        config_path (str): The config file; its name names the default
            folder.
        work_dir (str, optional): ``--work-dir``; it wins over the config.
        subdir (str): Folder under ``./work_dirs`` of the default, e.g. the
            tool's name. Defaults to '' (``./work_dirs/<config name>``).
    """
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', subdir,
                                osp.splitext(osp.basename(config_path))[0])


def dump_json(obj: Any, path: Optional[str]) -> None:
    """Write a tool's results as indented JSON (a tool's ``--json``).

    Args:
        obj (Any): JSON-serialisable results.
        path (str, optional): The output file; None writes nothing.
    """
    if path is None:
        return
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2)


def _own_visualizer(cfg: Config) -> None:
    """Give a run a visualizer instance of its own.

    mmengine builds the visualizer with ``get_instance(name)`` and mmdet's
    configs name it ``'visualizer'``, so a second runner in the same process
    (the demo's stages, in-process tests) would get the first one back and
    write its scalars into the first run's ``vis_data``. Without a name the
    runner names it after the run (its experiment name: config name and
    start time), as mmengine does for a config without a visualizer.

    Args:
        cfg (Config): The config; its ``visualizer`` loses its ``name``.
    """
    visualizer = cfg.get('visualizer')
    if isinstance(visualizer, dict):
        visualizer.pop('name', None)


def build_runner(cfg: Config) -> Runner:
    """Build the runner of a config, as mmdet's tools do.

    ``--launcher pytorch`` runs work on machines without CUDA too
    (:func:`init_cpu_distributed`).

    Args:
        cfg (Config): The full config, with ``launcher`` and ``work_dir``
            set.

    Returns:
        Runner: ``Runner.from_cfg(cfg)``, or the config's ``runner_type``.
    """
    init_cpu_distributed(cfg)
    _own_visualizer(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


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


def _evaluator_paths(cfg: Config, loader_keys: Sequence[str]) -> List[tuple]:
    """Return ``(config key, path)`` pairs the evaluators of the given
    dataloaders (``val_dataloader`` -> ``val_evaluator``) read from disk."""
    paths = []
    for loader_key in loader_keys:
        name = loader_key.replace('_dataloader', '_evaluator')
        evaluator = cfg.get(name)
        if not cfg.get(loader_key) or not evaluator:
            continue
        if isinstance(evaluator, dict) and 'metrics' in evaluator:
            name, evaluator = f'{name}.metrics', evaluator['metrics']
        metrics = [(name, evaluator)] if isinstance(evaluator, dict) else [
            (f'{name}.{index}', metric)
            for index, metric in enumerate(evaluator)
        ]
        paths += [(f'{prefix}.{key}', metric[key])
                  for prefix, metric in metrics
                  for key in _EVALUATOR_PATH_KEYS if metric.get(key)]
    return paths


def check_dataset_paths(cfg: Config,
                        loader_keys=DATALOADER_KEYS,
                        evaluators: bool = True) -> None:
    """Check that the files and folders the datasets and their evaluators
    read exist (before the runner creates the work dir).

    Args:
        cfg (Config): The config.
        loader_keys (tuple[str]): Which dataloaders to check.
        evaluators (bool): Whether to check their evaluators' files too
            (``val_dataloader`` -> ``val_evaluator``). Defaults to True.

    Raises:
        UserInputError: Naming the config key and the missing path.
    """
    paths = [(f'{name}.{key}', path)
             for name, dataset in _dataset_cfgs(cfg)
             if name.startswith(tuple(loader_keys))
             for key, path in _dataset_paths(dataset)]
    if evaluators:
        paths += _evaluator_paths(cfg, loader_keys)
    for key, path in paths:
        if not osp.exists(path):
            raise UserInputError(
                f"{key}: '{path}' does not exist (see the README for data "
                f'preparation, or override it with --cfg-options {key}=...).')


def _annotation_files(cfg: Config) -> Iterator[tuple]:
    """Yield ``(config key, path)`` of every JSON annotation file a config's
    datasets and evaluators read."""
    for name, dataset in _dataset_cfgs(cfg):
        for key, path in _dataset_paths(dataset):
            if key == 'ann_file':
                yield f'{name}.ann_file', path
    for key, path in _evaluator_paths(cfg, DATALOADER_KEYS):
        if key.endswith(('ann_file', 'gt_json_file')):
            yield key, path


def _bad_annotation(cfg: Config, error: BaseException) -> Optional[str]:
    """Name the annotation file behind ``error``: the first JSON annotation
    file that is not valid JSON, is not a JSON object, or (for a
    ``KeyError``) lacks the missing top-level key; None if none is."""
    missing = error.args[0] if isinstance(error, KeyError) else None
    for name, path in _annotation_files(cfg):
        if not path.endswith('.json') or not osp.isfile(path):
            continue
        try:
            with open(path) as f:
                content = json.load(f)
        except (OSError, ValueError) as load_error:
            return f"{name} '{path}': {load_error}"
        if not isinstance(content, dict):
            return (f"{name} '{path}': holds a JSON "
                    f'{type(content).__name__}, not an object with images, '
                    'annotations and categories')
        if isinstance(missing, str) and missing not in content:
            return f"{name} '{path}': the JSON has no '{missing}' key"
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
        cfg (Config, optional): The config, used to name the annotation
            file at fault when a JSON decoding error, or a ``KeyError``,
            ``TypeError`` or ``AttributeError`` caused by an annotation
            file's content (e.g. no ``categories``), surfaces.
    """
    try:
        yield
    except (KeyError, TypeError, AttributeError) as error:
        # Bad annotation content surfaces deep in a dataset API.
        message = None if cfg is None or os.environ.get(
            'PROSCALE_DEBUG') else _bad_annotation(cfg, error)
        if message is None:
            raise
        _exit_with(message)
    except (UserInputError, CheckpointError, WorkDirBusyError,
            FileNotFoundError, IsADirectoryError, json.JSONDecodeError,
            AssertionError, OSError) as error:
        if os.environ.get('PROSCALE_DEBUG'):
            raise
        if isinstance(error, AssertionError) and not _is_image_load_failure(
                error):
            raise
        message = _last_line(str(error))
        if isinstance(error, json.JSONDecodeError) and cfg is not None:
            message = _bad_annotation(cfg, error) or message
        _exit_with(message)


def _exit_with(message: str) -> None:
    """Write ``error: message`` to stderr and exit with status 2."""
    sys.stderr.write(f'error: {message}\n')
    sys.exit(2)
