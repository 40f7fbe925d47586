# Copyright (c) The proscale Authors. All rights reserved.
"""Fixtures of the converter tests."""
from typing import Any, Dict

import pytest
import torch
from converter_helpers import fixture_path


@pytest.fixture(scope='session')
def load_fixture():
    """Load a tiny fixture by file name (cached)."""
    cache: Dict[str, Dict[str, Any]] = {}

    def load(name: str) -> Dict[str, Any]:
        if name not in cache:
            cache[name] = torch.load(
                fixture_path(name), map_location='cpu', weights_only=True)
        return cache[name]

    return load
