# Copyright (c) The proscale Authors. All rights reserved.
"""Where the configs and tools that ship with the package live.

In a wheel they are installed as ``proscale/.mim/{configs,tools}`` (the
layout mmdet and mmengine use); in the repository ``projects/proscale/.mim``
holds links to the top-level ``configs/`` and ``tools/``, so the same paths
work in both.
"""
import os.path as osp

PACKAGE_PREFIX = 'proscale::'


def package_files_root() -> str:
    """Return the folder that holds the shipped ``configs/`` and ``tools/``."""
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '.mim')


def config_root() -> str:
    """Return the folder of the shipped configs."""
    return osp.join(package_files_root(), 'configs')


def resolve_config_path(path: str) -> str:
    """Turn ``proscale::REL`` into the shipped config's path.

    Args:
        path (str): A config path, either a file path or
            ``'proscale::mask2former/NAME.py'``.

    Returns:
        str: ``path`` itself, or the absolute path of the shipped config.
    """
    if path.startswith(PACKAGE_PREFIX):
        return osp.join(config_root(), path[len(PACKAGE_PREFIX):])
    return path
