# Copyright (c) The proscale Authors. All rights reserved.
"""The end-to-end demo of both methods on the synthetic dataset
(``tools/demo.py``, ``make demo``). Not imported by ``proscale``:
it registers nothing."""
from .pipeline import DemoPipeline
from .report import DemoReport
from .settings import PRESETS, DemoSettings
from .stages import StageError, StageRunner

__all__ = [
    'DemoPipeline', 'DemoReport', 'DemoSettings', 'PRESETS', 'StageError',
    'StageRunner'
]
