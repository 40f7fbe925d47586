# Copyright (c) The proscale Authors. All rights reserved.
"""Converters of other code bases' checkpoints to this project's models."""
from .checkpoint import (CONVERTER_VERSION, check_strict, convert_checkpoint,
                         default_config, load_detectron2_state_dict)
from .detectron2_arch import ConversionError, Detectron2Arch, recognize
from .detectron2_mask2former import build_rules, convert_state_dict

__all__ = [
    'CONVERTER_VERSION', 'ConversionError', 'Detectron2Arch', 'build_rules',
    'check_strict', 'convert_checkpoint', 'convert_state_dict',
    'default_config', 'load_detectron2_state_dict', 'recognize'
]
