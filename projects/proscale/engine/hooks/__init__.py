from .exit_sampling_hook import (ExitSamplingHook, exit_weights, sample_exits)

__all__ = ['ExitSamplingHook', 'exit_weights', 'sample_exits']
