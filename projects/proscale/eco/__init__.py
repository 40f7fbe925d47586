# Copyright (c) The proscale Authors. All rights reserved.
"""ECO-M2F's gate side: exit samples (step B's output), gate training
(step C) and the beta search / sweep over it.

The submodules are imported where used (``proscale.eco.gate_training``
etc.): the gate's dataset (``proscale.datasets``) reads
:mod:`.exit_samples`, and gate training builds on ``proscale.datasets``.
"""
