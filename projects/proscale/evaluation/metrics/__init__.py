# Copyright (c) The proscale Authors. All rights reserved.
from .cityscapes_panoptic_metric import CityscapesPanopticMetric  # noqa: F401
from .exit_gate_metric import ExitGateMetric, exit_choice_figures  # noqa: F401
