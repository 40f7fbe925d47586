# Copyright (c) The proscale Authors. All rights reserved.
"""Complexity analysis: FLOPs in the papers' convention and latency."""
from .flop_count import (MaskFormerFlopAnalyzer, average_flops, count_flops,
                         format_flops)
from .latency import benchmark, format_benchmark, make_workload
from .model_utils import (TensorForward, build_analysis_model,
                          encoder_workload, fixed_shape_batch, get_encoder,
                          get_pixel_decoder, load_analysis_config)

__all__ = [
    'MaskFormerFlopAnalyzer', 'TensorForward', 'average_flops', 'benchmark',
    'build_analysis_model', 'count_flops', 'encoder_workload',
    'fixed_shape_batch', 'format_benchmark', 'format_flops', 'get_encoder',
    'get_pixel_decoder',
    'load_analysis_config', 'make_workload'
]
