# Copyright (c) The proscale Authors. All rights reserved.
from . import (dense_heads, detectors, gates, layers,  # noqa: F401
               pixel_decoders)
