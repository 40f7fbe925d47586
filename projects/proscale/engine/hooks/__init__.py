# Copyright (c) The proscale Authors. All rights reserved.
from .exit_gate_training_hook import ExitGateTrainingHook
from .exit_sampling_hook import (ExitSamplingHook, exit_weights, sample_exits)
from .random_state_hook import (RandomStateHook, add_random_state_hook,
                                capture_random_states, restore_random_states)

__all__ = [
    'ExitGateTrainingHook', 'ExitSamplingHook', 'exit_weights',
    'sample_exits', 'RandomStateHook', 'add_random_state_hook',
    'capture_random_states', 'restore_random_states'
]
