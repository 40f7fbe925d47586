# Copyright (c) The proscale Authors. All rights reserved.
"""Map detectron2 Mask2Former / PRO-SCALE / ECO-M2F weights onto mmdet.

The authors' models (detectron2 + Mask2Former code) and this project's
(mmdet 3.3 ``Mask2Former`` with ``ProScalePixelDecoder``, or
``EcoMask2Former`` with ``EarlyExitMSDeformAttnPixelDecoder`` and
``ExitGate``) compute the same functions with other module names. The
renaming is the ordered ``(regex, replacement)`` table of
:func:`build_rules`; the value changes are few:

- Swin: mmdet's own ``swin_converter`` (PatchMerging channel order) on the
  keys of :data:`SWIN_KEYS`.
- ResNet: detectron2's FrozenBN has no ``num_batches_tracked``; mmdet's
  frozen ``BN`` needs it for strict loading (value 0, unused in eval).
- Classifier: rows reordered for Cityscapes (detectron2 uses train ids,
  stuff first; this project orders things first); COCO is the identity.
- ECO-M2F gate: ``gate.trained`` is set, the weights are copied unchanged
  (``ExitGate.forward`` is the authors' ``head(avgpool(x))``).
- ``criterion.empty_weight`` is a loss buffer (mmdet's
  ``loss_cls.class_weight``) and is dropped.
"""
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Tuple, Union

import torch
from mmdet.models.backbones.swin import swin_converter
from torch import Tensor

from .detectron2_arch import (CLASS_ORDERS, PIXEL_DECODER, PREDICTOR,
                              Detectron2Arch)

Replacement = Union[str, Callable[['re.Match'], str], None]
Rule = Tuple[str, Replacement]
DROPPED_KEYS = ('criterion.empty_weight', )
HEAD = 'panoptic_head.'
# Cityscapes: detectron2's contiguous id is the train id (11 stuff classes,
# then 8 things); this project's CityscapesPanopticDataset lists the things
# first. Row i of the converted classifier is detectron2's row
# CITYSCAPES_ROWS[i]; the last ("no object") row stays last.
CITYSCAPES_ROWS = tuple(range(11, 19)) + tuple(range(11)) + (19, )

# The keys of detectron2's Swin (D2SwinTransformer) that mmdet's
# swin_converter maps, without the ``backbone.`` prefix.
SWIN_KEYS = (r'^(patch_embed\.|layers\.\d+\.(blocks\.\d+\.|downsample\.)'
             r'|norm\d\.)')

_P = re.escape(PIXEL_DECODER)
_Q = re.escape(PREDICTOR)
_PD = HEAD + 'pixel_decoder.'
_DEC = HEAD + 'transformer_decoder.layers.'


def _layer(match: 're.Match') -> str:
    """``backbone.res{s}.{b}.`` (detectron2) -> ``backbone.layer{s-1}.{b}.``
    (mmdet) from a match whose first two groups are ``s`` and ``b``."""
    return f'backbone.layer{int(match[1]) - 1}.{match[2]}.'


def _resnet_rules() -> List[Rule]:
    """Rules of detectron2's ResNet (stem, FrozenBN, shortcut)."""
    block = r'^backbone\.res(\d)\.(\d+)\.'
    return [
        (r'^backbone\.stem\.conv1\.weight$', 'backbone.conv1.weight'),
        (r'^backbone\.stem\.conv1\.norm\.', 'backbone.bn1.'),
        (block + r'(conv\d)\.weight$', lambda m: f'{_layer(m)}{m[3]}.weight'),
        (block + r'conv(\d)\.norm\.(.+)$',
         lambda m: f'{_layer(m)}bn{m[3]}.{m[4]}'),
        (block + r'shortcut\.weight$',
         lambda m: f'{_layer(m)}downsample.0.weight'),
        (block + r'shortcut\.norm\.(.+)$',
         lambda m: f'{_layer(m)}downsample.1.{m[3]}'),
    ]


def build_rules(arch: Detectron2Arch) -> List[Rule]:
    """The ordered renaming table for a recognised model.

    Args:
        arch (Detectron2Arch): The recognised model.

    Returns:
        list[tuple[str, str | Callable | None]]: ``(pattern, replacement)``
        pairs tried in order, the first match wins; the replacement is a
        ``re.sub`` template or function, or None to drop the key. Swin
        backbone keys are not in the table (see :func:`convert_state_dict`).
    """
    encoder = _P + r'transformer\.encoder\.'
    layer = encoder + r'layers\.(\d+)\.'
    # LPE keeps only the norm of the 3x3 step (LightPixelEmbedding.norm).
    output_norm = ('output_convs.0.norm.'
                   if arch.pixel_embed == 'maxpool' else 'output_convs.0.gn.')
    rules: List[Rule] = [(f'^{re.escape(k)}$', None) for k in DROPPED_KEYS]
    if arch.backbone == 'resnet':
        rules += _resnet_rules()
    rules += [
        # pixel decoder
        (_P + r'input_proj\.(\d+)\.0\.', _PD + r'input_convs.\1.conv.'),
        (_P + r'input_proj\.(\d+)\.1\.', _PD + r'input_convs.\1.gn.'),
        (_P + r'transformer\.level_embed$', _PD + 'level_encoding.weight'),
        (layer + r'self_attn\.', _PD + r'encoder.layers.\1.self_attn.'),
        (layer + r'norm1\.', _PD + r'encoder.layers.\1.norms.0.'),
        (layer + r'norm2\.', _PD + r'encoder.layers.\1.norms.1.'),
        (layer + r'linear1\.', _PD + r'encoder.layers.\1.ffn.layers.0.0.'),
        (layer + r'linear2\.', _PD + r'encoder.layers.\1.ffn.layers.1.'),
        (encoder + r'token_excite\.ops\.', _PD + 'trc.proj.'),
        (encoder + r'gt\.head\.', 'gate.head.'),
        (_P + r'adapter_1\.weight$', _PD + 'lateral_convs.0.conv.weight'),
        (_P + r'adapter_1\.norm\.', _PD + 'lateral_convs.0.gn.'),
        (_P + r'layer_1\.weight$', _PD + 'output_convs.0.conv.weight'),
        (_P + r'layer_1\.norm\.', _PD + output_norm),
        (_P + r'mask_features\.', _PD + 'mask_feature.'),
        # transformer decoder
        (_Q + r'(query_feat|query_embed|level_embed)\.', HEAD + r'\1.'),
        (_Q + r'class_embed\.', HEAD + 'cls_embed.'),
        (_Q + r'mask_embed\.layers\.(\d)\.',
         lambda m: f'{HEAD}mask_embed.{2 * int(m[1])}.'),
        (_Q + r'decoder_norm\.', HEAD + 'transformer_decoder.post_norm.'),
        (_Q + r'input_proj\.(\d+)\.', HEAD + r'decoder_input_projs.\1.'),
        (_Q + r'transformer_cross_attention_layers\.(\d+)\.multihead_attn\.',
         _DEC + r'\1.cross_attn.attn.'),
        (_Q + r'transformer_cross_attention_layers\.(\d+)\.norm\.',
         _DEC + r'\1.norms.0.'),
        (_Q + r'transformer_self_attention_layers\.(\d+)\.self_attn\.',
         _DEC + r'\1.self_attn.attn.'),
        (_Q + r'transformer_self_attention_layers\.(\d+)\.norm\.',
         _DEC + r'\1.norms.1.'),
        (_Q + r'transformer_ffn_layers\.(\d+)\.linear1\.',
         _DEC + r'\1.ffn.layers.0.0.'),
        (_Q + r'transformer_ffn_layers\.(\d+)\.linear2\.',
         _DEC + r'\1.ffn.layers.1.'),
        (_Q + r'transformer_ffn_layers\.(\d+)\.norm\.', _DEC + r'\1.norms.2.'),
    ]
    return rules


def rename(key: str, rules: List[Rule]) -> Tuple[bool, Union[str, None]]:
    """Apply the first matching rule to a key.

    Args:
        key (str): A detectron2 key.
        rules (list[tuple]): See :func:`build_rules`.

    Returns:
        tuple[bool, str | None]: Whether a rule matched, and the new key
        (None for a dropped key).
    """
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match:
            if replacement is None:
                return True, None
            return True, re.sub(pattern, replacement, key, count=1)
    return False, None


def _reorder_classes(weight: Tensor, class_order: str) -> Tensor:
    """Reorder classifier rows from detectron2's ids to this project's."""
    if class_order not in CLASS_ORDERS:
        raise ValueError(f'unknown class order {class_order!r}')
    if class_order == 'identity':
        return weight
    if weight.shape[0] != len(CITYSCAPES_ROWS):
        raise ValueError(f'the Cityscapes class order needs '
                         f'{len(CITYSCAPES_ROWS)} classifier rows, got '
                         f'{weight.shape[0]}')
    return weight[list(CITYSCAPES_ROWS)]


def convert_state_dict(
        state_dict: Mapping[str, Tensor],
        arch: Detectron2Arch) -> Tuple['OrderedDict[str, Tensor]', List[str]]:
    """Convert a detectron2 state dict to this project's key layout.

    Args:
        state_dict (Mapping[str, Tensor]): The detectron2 ``model`` dict.
        arch (Detectron2Arch): The model recognised from it
            (:func:`~proscale.converters.recognize`).

    Returns:
        tuple: A tuple containing the following:

            - new_state_dict (OrderedDict[str, Tensor]): The mmdet state
              dict (``num_batches_tracked`` and ``gate.trained`` added).
            - leftover_keys (list[str]): detectron2 keys no rule placed.
    """
    rules = build_rules(arch)
    new_state_dict: 'OrderedDict[str, Tensor]' = OrderedDict()
    leftover: List[str] = []
    swin: Dict[str, Tensor] = OrderedDict()
    for key, value in state_dict.items():
        if arch.backbone == 'swin' and key.startswith('backbone.'):
            if re.match(SWIN_KEYS, key[len('backbone.'):]):
                swin[key[len('backbone.'):]] = value
            else:
                leftover.append(key)
            continue
        matched, new_key = rename(key, rules)
        if not matched:
            leftover.append(key)
        elif new_key is not None:
            if new_key.startswith(HEAD + 'cls_embed.'):
                value = _reorder_classes(value, arch.class_order)
            new_state_dict[new_key] = value
            if arch.backbone == 'resnet' and re.match(
                    r'backbone\..*running_var$', new_key):
                new_state_dict[new_key[:-len('running_var')] +
                               'num_batches_tracked'] = torch.tensor(0)
    new_state_dict.update(swin_converter(swin))
    if arch.gate_exits is not None:
        new_state_dict['gate.trained'] = torch.tensor(True)
    return new_state_dict, leftover
