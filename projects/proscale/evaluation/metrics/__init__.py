# Copyright (c) The proscale Authors. All rights reserved.
from .cityscapes_panoptic_metric import CityscapesPanopticMetric  # noqa: F401
