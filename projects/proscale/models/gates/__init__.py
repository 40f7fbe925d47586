# Copyright (c) The proscale Authors. All rights reserved.
from .exit_gate import ExitGate
from .exit_gate_model import ExitGateModel
from .exit_targets import exit_utility, hard_exit_targets, soft_exit_targets
from .gate_checkpoint import gate_meta, load_gate, merge_gate, save_gate
from .gate_losses import (GATE_LOSSES, ExitHardCELoss, ExitSoftCELoss,
                          ExitSoftMSELoss, build_gate_loss)
from .gate_preprocessor import ExitGatePreprocessor

__all__ = [
    'ExitGate', 'ExitGateModel', 'ExitGatePreprocessor', 'ExitHardCELoss',
    'ExitSoftCELoss', 'ExitSoftMSELoss', 'GATE_LOSSES', 'build_gate_loss',
    'exit_utility', 'gate_meta', 'hard_exit_targets', 'load_gate',
    'merge_gate', 'save_gate', 'soft_exit_targets'
]
