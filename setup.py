# Copyright (c) The proscale Authors. All rights reserved.
"""Build the C++ ops of proscale (``proscale._ext``).

Everything else about the package is declared in ``pyproject.toml``; this
file only adds the extension. It needs torch at build time, so install with
``pip install --no-build-isolation`` (as ``make install`` does).

``PROSCALE_WITH_OPS`` chooses whether the ops are built:

* unset (default): build them; if that fails, warn and install without
  them (the models then run mmcv's PyTorch path);
* ``1``: build them and fail the install if that fails;
* ``0``: do not build them.
"""
import os
import os.path as osp
import sys
from glob import glob

from setuptools import setup

OPS_SWITCH = 'PROSCALE_WITH_OPS'
CSRC = osp.join('projects', 'proscale', 'ops', 'csrc')


def get_extensions() -> list:
    """The ``proscale._ext`` CppExtension, or none if switched off."""
    if os.getenv(OPS_SWITCH) == '0':
        return []
    from torch.utils.cpp_extension import CppExtension
    sources = sorted(glob(osp.join(CSRC, '*.cpp'))) + sorted(
        glob(osp.join(CSRC, 'cpu', '*.cpp')))
    return [
        CppExtension(
            name='proscale._ext',
            sources=sources,
            extra_compile_args={'cxx': ['-O3', '-g0', '-fopenmp']},
            extra_link_args=['-fopenmp'])
    ]


def get_cmdclass() -> dict:
    """``build_ext`` that tolerates a failed build unless it is required."""
    if os.getenv(OPS_SWITCH) == '0':
        return {}
    from torch.utils.cpp_extension import BuildExtension

    class OptionalBuildExtension(BuildExtension):

        def run(self) -> None:
            try:
                super().run()
            except Exception as error:
                if os.getenv(OPS_SWITCH) == '1':
                    raise
                print(
                    f'WARNING: building proscale._ext failed ({error}); '
                    'proscale is installed without its C++ ops and runs '
                    f'the PyTorch path. Set {OPS_SWITCH}=1 to make this an '
                    'error.',
                    file=sys.stderr)
                # Nothing was built: install without the extension.
                self.extensions = []

    return {'build_ext': OptionalBuildExtension.with_options(use_ninja=True)}


setup(ext_modules=get_extensions(), cmdclass=get_cmdclass())
