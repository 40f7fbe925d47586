# Copyright (c) The proscale Authors. All rights reserved.
from .exit_gate import ExitGate
from .exit_targets import exit_utility, hard_exit_targets, soft_exit_targets
from .gate_checkpoint import load_gate, merge_gate, save_gate
from .gate_losses import ExitHardCELoss, ExitSoftCELoss, ExitSoftMSELoss

__all__ = [
    'ExitGate', 'ExitHardCELoss', 'ExitSoftCELoss', 'ExitSoftMSELoss',
    'exit_utility', 'hard_exit_targets', 'load_gate', 'merge_gate',
    'save_gate', 'soft_exit_targets'
]
