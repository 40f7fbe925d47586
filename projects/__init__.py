# Copyright (c) The proscale Authors. All rights reserved.
"""The repository's ``projects`` folder.

``projects/proscale`` is installed and imported as the top-level package
``proscale``. The older import name ``projects.proscale`` still works from a
repository checkout: it and every module under it are the very modules of
``proscale`` (one identity), so nothing is executed or registered twice when
both names are used.
"""
import importlib
import importlib.abc
import importlib.util
import os.path as osp
import sys
from types import ModuleType
from typing import Optional, Sequence

_ALIAS = __name__ + '.proscale'
_TARGET = 'proscale'


class _ProscaleAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import ``projects.proscale[.X]`` as ``proscale[.X]``."""

    def find_spec(self,
                  fullname: str,
                  path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None):
        if fullname == _ALIAS or fullname.startswith(_ALIAS + '.'):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns whatever ``sys.modules`` holds under the
        # name once loading is done: the real module.
        target = _TARGET + module.__name__[len(_ALIAS):]
        sys.modules[module.__name__] = importlib.import_module(target)


if importlib.util.find_spec(_TARGET) is None:
    # Not installed (``pip install -e .`` was not run): import the
    # repository's copy under its real name.
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.meta_path.insert(0, _ProscaleAlias())
