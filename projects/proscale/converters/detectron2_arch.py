# Copyright (c) The proscale Authors. All rights reserved.
"""Recognise a detectron2 Mask2Former-family checkpoint from its keys.

The released checkpoints of Mask2Former, PRO-SCALE and ECO-M2F hold no
settings, only a state dict. Everything the conversion needs (backbone and
its sizes, encoder depth and stage split, TRC type, pixel embedding, gate,
decoder sizes, number of classes) follows from the key names and shapes;
:func:`recognize` reads it into a :class:`Detectron2Arch`.
"""
import re
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

from torch import Size

from ..utils.cli import UserInputError

PIXEL_DECODER = 'sem_seg_head.pixel_decoder.'
PREDICTOR = 'sem_seg_head.predictor.'
ENCODER = PIXEL_DECODER + 'transformer.encoder.'
TRC_KEY = ENCODER + 'token_excite.ops.weight'
GATE_KEY = ENCODER + 'gt.head.weight'
CLASS_ORDERS = ('identity', 'cityscapes')
# Number of classes -> dataset whose contiguous ids detectron2 uses.
_DATASETS = {133: 'COCO', 19: 'Cityscapes', 150: 'ADE20K'}
_SWIN_NAMES = {(96, (2, 2, 6, 2)): 'swin-t', (96, (2, 2, 18, 2)): 'swin-s',
               (128, (2, 2, 18, 2)): 'swin-b', (192, (2, 2, 18, 2)): 'swin-l'}
_RESNET_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}


class ConversionError(UserInputError):
    """A checkpoint that cannot be converted; the message says why."""


@dataclass(frozen=True)
class Detectron2Arch:
    """Settings of a detectron2 Mask2Former / PRO-SCALE / ECO-M2F model.

    Args:
        backbone (str): ``'resnet'`` or ``'swin'``.
        backbone_settings (tuple[tuple[str, object]]): ResNet ``depth``,
            ``stem_channels``, ``base_channels``; Swin ``embed_dims``,
            ``depths``, ``num_heads``, ``window_size``, ``patch_size``,
            ``mlp_ratio``. As sorted (name, value) pairs.
        pixel_decoder (str): ``'proscale'`` (PRO-SCALE's progressive
            encoder) or ``'msdeform'`` (Mask2Former's, also ECO-M2F's).
        num_layers_per_stage (tuple[int]): Encoder layers per stage, coarse
            to fine; ``(0, 0, N)`` for Mask2Former's encoder.
        trc (str, optional): ``'linear'`` or ``'conv'`` TRC, None without.
        pixel_embed (str): ``'maxpool'`` (LPE) or ``'conv'`` (3x3 conv).
        gate_exits (tuple[int], optional): Exits of ECO-M2F's gate, in logit
            order; None without a gate.
        feat_channels (int): Pixel decoder (and decoder) width.
        mask_channels (int): Mask feature channels.
        encoder_ffn (int): Encoder FFN width.
        num_decoder_layers (int): Transformer decoder layers.
        decoder_ffn (int): Transformer decoder FFN width.
        num_queries (int): Object queries.
        num_classes (int): Classes, without "no object".
        class_order (str): ``'identity'`` or ``'cityscapes'``: how the
            classifier rows map onto this project's class order.
    """
    backbone: str
    backbone_settings: Tuple[Tuple[str, object], ...]
    pixel_decoder: str
    num_layers_per_stage: Tuple[int, ...]
    trc: Optional[str]
    pixel_embed: str
    gate_exits: Optional[Tuple[int, ...]]
    feat_channels: int
    mask_channels: int
    encoder_ffn: int
    num_decoder_layers: int
    decoder_ffn: int
    num_queries: int
    num_classes: int
    class_order: str

    @property
    def backbone_cfg(self) -> Dict[str, object]:
        """dict: The backbone settings by name."""
        return dict(self.backbone_settings)

    @property
    def backbone_name(self) -> str:
        """str: Short name as used in config names, e.g. ``'r50'``."""
        cfg = self.backbone_cfg
        if self.backbone == 'resnet':
            return f"r{cfg['depth']}"
        return _SWIN_NAMES.get((cfg['embed_dims'], cfg['depths']),
                               f"swin-{cfg['embed_dims']}")

    @property
    def dataset(self) -> Optional[str]:
        """str, optional: Dataset the class count belongs to, if known."""
        return _DATASETS.get(self.num_classes)

    @property
    def model_type(self) -> str:
        """str: ``'PRO-SCALE'``, ``'ECO-M2F'`` or ``'Mask2Former'``."""
        if self.pixel_decoder == 'proscale':
            return 'PRO-SCALE'
        return 'ECO-M2F' if self.gate_exits else 'Mask2Former'

    def describe(self) -> str:
        """One line naming the recognised model."""
        cfg = self.backbone_cfg
        if self.backbone == 'resnet':
            backbone = (f"ResNet-{cfg['depth']} (stem {cfg['stem_channels']},"
                        f" width {cfg['base_channels']})")
        else:
            backbone = (f"Swin (embed {cfg['embed_dims']}, depths "
                        f"{cfg['depths']}, window {cfg['window_size']})")
        parts = [f'{self.model_type}: {backbone}']
        if self.pixel_decoder == 'proscale':
            parts.append(f'stages {self.num_layers_per_stage}, TRC '
                         f'{self.trc}, pixel embedding {self.pixel_embed}')
        else:
            parts.append(f'{sum(self.num_layers_per_stage)} encoder layers')
        if self.gate_exits:
            parts.append(f'gate exits {self.gate_exits}')
        parts.append(f'{self.num_decoder_layers} decoder layers, '
                     f'{self.num_queries} queries, {self.num_classes} classes'
                     f' ({self.dataset or "unknown dataset"} order '
                     f'{self.class_order})')
        return ', '.join(parts)


def _shape(shapes: Mapping[str, Size], key: str) -> Tuple[int, ...]:
    """Shape of ``key``, or a :class:`ConversionError` naming it."""
    if key not in shapes:
        raise ConversionError(f'missing key {key!r}')
    return tuple(shapes[key])


def _count(shapes: Mapping[str, Size], pattern: str) -> Counter:
    """Count the distinct indices captured by ``pattern`` per group."""
    found = set()
    for key in shapes:
        match = re.match(pattern, key)
        if match:
            found.add(tuple(int(g) for g in match.groups()))
    counts: Counter = Counter()
    for groups in found:
        counts[groups[:-1]] += 1
    return counts


def _resnet_settings(shapes: Mapping[str, Size]) -> Dict[str, object]:
    """Depth, stem and width of detectron2's ResNet."""
    blocks = _count(shapes, r'backbone\.res(\d)\.(\d+)\.conv1\.weight$')
    stage_blocks = tuple(blocks[(s, )] for s in (2, 3, 4, 5))
    if stage_blocks not in _RESNET_DEPTHS:
        raise ConversionError(
            f'unsupported ResNet with {stage_blocks} blocks per stage '
            f'(supported: {sorted(_RESNET_DEPTHS.values())})')
    conv1 = _shape(shapes, 'backbone.res2.0.conv1.weight')
    conv3 = _shape(shapes, 'backbone.res2.0.conv3.weight')
    if conv3[0] != 4 * conv1[0]:
        raise ConversionError(
            f'backbone.res2.0.conv3.weight {conv3}: mmdet\'s ResNet needs '
            f'res2 outputs = 4 x width ({4 * conv1[0]})')
    if _shape(shapes, 'backbone.res2.0.conv2.weight')[1] != conv1[0]:
        raise ConversionError('backbone.res2.0.conv2.weight: grouped '
                              '(ResNeXt) convolutions are not supported')
    return dict(
        depth=_RESNET_DEPTHS[stage_blocks],
        stem_channels=_shape(shapes, 'backbone.stem.conv1.weight')[0],
        base_channels=conv1[0])


def _swin_settings(shapes: Mapping[str, Size]) -> Dict[str, object]:
    """Sizes of detectron2's (Mask2Former's) Swin Transformer."""
    proj = _shape(shapes, 'backbone.patch_embed.proj.weight')
    blocks = _count(shapes, r'backbone\.layers\.(\d+)\.blocks\.(\d+)\.'
                    r'norm1\.weight$')
    depths = tuple(blocks[(i, )] for i in range(len(blocks)))
    num_heads, window_size = [], None
    for i in range(len(depths)):
        table = _shape(shapes, f'backbone.layers.{i}.blocks.0.attn.'
                       'relative_position_bias_table')
        num_heads.append(table[1])
        window_size = int(round(table[0]**0.5 + 1)) // 2
    fc1 = _shape(shapes, 'backbone.layers.0.blocks.0.mlp.fc1.weight')
    if fc1[0] % fc1[1]:
        raise ConversionError('backbone.layers.0.blocks.0.mlp.fc1.weight '
                              f'{fc1}: mmdet\'s Swin needs an integer '
                              'mlp_ratio')
    return dict(
        embed_dims=proj[0],
        depths=depths,
        num_heads=tuple(num_heads),
        window_size=window_size,
        patch_size=proj[2],
        mlp_ratio=fc1[0] // fc1[1])


def _encoder_stages(shapes: Mapping[str, Size],
                    num_levels: int) -> Tuple[int, ...]:
    """Encoder layers per stage, from the per-layer number of levels.

    The attention weights of a layer with ``l`` levels have
    ``heads * l * points`` rows; the deepest layer sees all levels.
    """
    rows = []
    while f'{ENCODER}layers.{len(rows)}.self_attn.attention_weights.weight' \
            in shapes:
        rows.append(shapes[f'{ENCODER}layers.{len(rows)}.self_attn.'
                           'attention_weights.weight'][0])
    if not rows:
        raise ConversionError(f'no encoder layers ({ENCODER}layers.*)')
    if rows[-1] % num_levels:
        raise ConversionError(
            f'{ENCODER}layers.{len(rows) - 1}: {rows[-1]} attention weights '
            f'do not fit {num_levels} levels')
    per_level = rows[-1] // num_levels
    levels = [r // per_level for r in rows]
    if any(r % per_level for r in rows) or levels != sorted(levels) or \
            levels[0] < 1:
        raise ConversionError(
            f'encoder layers with {levels} levels: not a coarse-to-fine '
            'progressive schedule')
    return tuple(levels.count(s + 1) for s in range(num_levels))


def _class_order(num_classes: int, class_order: Optional[str]) -> str:
    """The classifier row order: given, or from the number of classes."""
    if class_order is not None:
        if class_order not in CLASS_ORDERS:
            raise ConversionError(f'unknown class order {class_order!r}; '
                                  f'expected one of {CLASS_ORDERS}')
        if class_order == 'cityscapes' and num_classes != 19:
            raise ConversionError(
                f'the cityscapes class order needs 19 classes, the '
                f'checkpoint has {num_classes}')
        return class_order
    if num_classes == 150:
        raise ConversionError(
            '150 classes (ADE20K): detectron2 orders them differently from '
            "this project's ADE20K datasets; not supported")
    return 'cityscapes' if num_classes == 19 else 'identity'


def recognize(shapes: Mapping[str, Size],
              class_order: Optional[str] = None,
              gate_exits: Optional[Sequence[int]] = None) -> Detectron2Arch:
    """Read a detectron2 model's settings from its state dict.

    Args:
        shapes (Mapping[str, Size]): Key -> shape of the detectron2 state
            dict (the ``model`` entry of the checkpoint).
        class_order (str, optional): Override of the classifier row order
            (``'identity'`` or ``'cityscapes'``). None infers it: Cityscapes
            (19 classes) is reordered from detectron2's train ids (stuff
            first) to this project's things-first order; COCO (133) is the
            identity.
        gate_exits (Sequence[int], optional): Override of the gate's exits.
            None takes ECO-M2F's rule: the last logit is the full encoder,
            one exit per layer below it (2..6 for 6 layers and 5 logits).

    Returns:
        Detectron2Arch: The recognised settings.

    Raises:
        ConversionError: If the keys are not those of a supported model.
    """
    if not any(k.startswith(PREDICTOR) for k in shapes) or not any(
            k.startswith(PIXEL_DECODER) for k in shapes):
        raise ConversionError(
            f'not a Mask2Former-family detectron2 model: no {PREDICTOR}* '
            f'or {PIXEL_DECODER}* keys')
    if 'backbone.stem.conv1.weight' in shapes:
        backbone, backbone_cfg = 'resnet', _resnet_settings(shapes)
    elif 'backbone.patch_embed.proj.weight' in shapes:
        backbone, backbone_cfg = 'swin', _swin_settings(shapes)
    else:
        raise ConversionError('unknown backbone: neither detectron2 ResNet '
                              '(backbone.stem.*) nor Swin '
                              '(backbone.patch_embed.*) keys')

    level_embed = _shape(shapes, PIXEL_DECODER + 'transformer.level_embed')
    num_levels, feat_channels = level_embed
    stages = _encoder_stages(shapes, num_levels)
    trc = None
    if TRC_KEY in shapes:
        trc = 'linear' if len(shapes[TRC_KEY]) == 2 else 'conv'
    pixel_embed = ('conv' if PIXEL_DECODER + 'layer_1.weight' in shapes else
                   'maxpool')
    is_proscale = (trc is not None or pixel_embed == 'maxpool'
                   or any(stages[:-1]))

    exits = None
    if GATE_KEY in shapes:
        num_logits = shapes[GATE_KEY][0]
        num_layers = sum(stages)
        exits = tuple(gate_exits) if gate_exits is not None else tuple(
            range(num_layers - num_logits + 1, num_layers + 1))
        if len(exits) != num_logits or not all(
                0 < k <= num_layers for k in exits):
            raise ConversionError(
                f'{GATE_KEY} has {num_logits} logits: exits {exits} do not '
                f'fit them and the {num_layers} encoder layers')

    cls_embed = _shape(shapes, PREDICTOR + 'class_embed.weight')
    num_decoder_layers = sum(
        _count(shapes, r'sem_seg_head\.predictor\.transformer_ffn_layers\.'
               r'(\d+)\.linear1\.weight$').values())
    return Detectron2Arch(
        backbone=backbone,
        backbone_settings=tuple(sorted(backbone_cfg.items())),
        pixel_decoder='proscale' if is_proscale else 'msdeform',
        num_layers_per_stage=stages,
        trc=trc,
        pixel_embed=pixel_embed,
        gate_exits=exits,
        feat_channels=feat_channels,
        mask_channels=_shape(shapes,
                             PIXEL_DECODER + 'mask_features.weight')[0],
        encoder_ffn=_shape(shapes, ENCODER + 'layers.0.linear1.weight')[0],
        num_decoder_layers=num_decoder_layers,
        decoder_ffn=_shape(
            shapes, PREDICTOR + 'transformer_ffn_layers.0.linear1.weight')[0],
        num_queries=_shape(shapes, PREDICTOR + 'query_feat.weight')[0],
        num_classes=cls_embed[0] - 1,
        class_order=_class_order(cls_embed[0] - 1, class_order))
