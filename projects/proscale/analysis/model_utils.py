# Copyright (c) The proscale Authors. All rights reserved.
"""Build Mask2Former-style and DETR-family models and inputs for complexity
analysis.

Shared by the FLOP counter and the latency benchmark: both need a model built
from a config without loading weights, a network forward that takes a single
tensor (what ``torch.jit`` traces and what the benchmark times), the model's
parts (backbone, encoder: the pixel decoder of Mask2Former, ``model.encoder``
of DINO and Deformable DETR) and an input batch of a fixed size.
"""
import inspect
import os.path as osp
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.models.detectors import DetectionTransformer
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import get_installed_path, is_installed
from mmseg.models.segmentors import BaseSegmentor
from mmseg.structures import SegDataSample

from ..utils.cli import UserInputError, load_config

_PACKAGE_SEPARATOR = '::'


def resolve_config_path(path: str) -> str:
    """Resolve ``'pkg::rel/path.py'`` to the installed package's config file.

    Args:
        path (str): A config file, or a config of an installed OpenMMLab
            package written as ``'mmdet::mask2former/xxx.py'``.

    Returns:
        str: A path on disk.
    """
    if _PACKAGE_SEPARATOR not in path:
        return path
    package, relative = path.split(_PACKAGE_SEPARATOR, 1)
    if not is_installed(package):
        raise UserInputError(f"config '{path}': package '{package}' is not "
                             'installed')
    return osp.join(get_installed_path(package), '.mim', 'configs', relative)


def load_analysis_config(path: str,
                         cfg_options: Optional[dict] = None) -> Config:
    """Load a config (file or ``pkg::`` path) with ``--cfg-options``.

    Args:
        path (str): The config.
        cfg_options (dict, optional): Overrides from the command line.

    Returns:
        Config: The merged config.
    """
    return load_config(resolve_config_path(path), cfg_options)


def build_analysis_model(cfg: Config,
                         device: str = 'cpu',
                         checkpoint: Optional[str] = None) -> nn.Module:
    """Build ``cfg.model`` in eval mode for FLOP counting or timing.

    ``init_weights`` is never called, so ``init_cfg`` (e.g. pretrained
    backbone URLs) is ignored and nothing is downloaded: the weights are
    PyTorch's default random ones unless a checkpoint is given. FLOPs and
    latency do not depend on the weights, except for data-dependent paths
    such as a trained exit gate, which needs its checkpoint.

    Args:
        cfg (Config): The config.
        device (str): Where to put the model. Defaults to 'cpu'.
        checkpoint (str, optional): Weights to load.

    Returns:
        nn.Module: The model, in eval mode.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
        load_checkpoint(model, checkpoint, map_location='cpu')
    return model.to(device).eval()


def get_head(model: nn.Module) -> nn.Module:
    """Return the mask-classification head of a detector or segmentor.

    Args:
        model (nn.Module): An mmdet ``MaskFormer``-family detector
            (``panoptic_head``) or an mmseg segmentor (``decode_head``).

    Returns:
        nn.Module: The head owning the pixel decoder.
    """
    for name in ('panoptic_head', 'decode_head'):
        head = getattr(model, name, None)
        if head is not None and hasattr(head, 'pixel_decoder'):
            return head
    raise ValueError(
        f'{type(model).__name__} has no pixel decoder: expected '
        '`panoptic_head.pixel_decoder` (mmdet MaskFormer family) or '
        '`decode_head.pixel_decoder` (mmseg Mask2Former/MaskFormer heads)')


def get_pixel_decoder(model: nn.Module) -> nn.Module:
    """Return the pixel decoder ("the encoder") of a Mask2Former model."""
    return get_head(model).pixel_decoder


def get_encoder(model: nn.Module) -> nn.Module:
    """Return "the encoder" whose FLOPs and latency the papers report.

    Args:
        model (nn.Module): A Mask2Former-style detector or segmentor (the
            pixel decoder) or a DETR-family detector such as DINO or
            Deformable DETR (``model.encoder``).

    Returns:
        nn.Module: The pixel decoder or the DETR encoder.
    """
    if isinstance(model, DetectionTransformer):
        return model.encoder
    try:
        return get_pixel_decoder(model)
    except ValueError:
        raise ValueError(
            f'{type(model).__name__} has no pixel decoder or DETR encoder: '
            'expected a Mask2Former-style model (`panoptic_head` or '
            '`decode_head` with a `pixel_decoder`) or an mmdet '
            '`DetectionTransformer` (e.g. DINO)') from None


def encoder_workload(model: nn.Module, inputs: torch.Tensor,
                     data_samples: Sequence) -> Callable[[], Any]:
    """Make a no-argument callable running only the encoder of a model.

    The backbone (and neck) and, for DETR-family detectors, the
    ``pre_transformer`` step (flattening, masks, position embeddings) run
    once here and are not part of the workload.

    Args:
        model (nn.Module): See :func:`get_encoder`.
        inputs (Tensor): Preprocessed images of shape (B, 3, H, W).
        data_samples (list): Preprocessed data samples of the batch.

    Returns:
        Callable: Runs the pixel decoder on the backbone features, or the
        detector's ``forward_encoder`` on its encoder inputs.
    """
    feats = model.extract_feat(inputs)
    if isinstance(model, DetectionTransformer):
        encoder_inputs, _ = model.pre_transformer(feats, data_samples)
        return partial(model.forward_encoder, **encoder_inputs)
    return partial(get_pixel_decoder(model), feats)


def get_backbone_modules(model: nn.Module) -> List[nn.Module]:
    """Return the backbone and, if the model has one, the neck."""
    modules = [model.backbone]
    if getattr(model, 'neck', None) is not None:
        modules.append(model.neck)
    return modules


class TensorForward(nn.Module):
    """The network forward of a detector or segmentor on one input tensor.

    It is the model's ``mode='tensor'`` forward (no post-processing) with the
    data samples bound, so that ``torch.jit`` can trace it. mmseg's
    ``EncoderDecoder._forward`` calls ``decode_head.forward(x)`` without the
    data samples that ``Mask2FormerHead.forward`` requires (mmseg#3267), so
    for segmentors the head is called here with them.

    Args:
        model (nn.Module): The detector or segmentor.
        data_samples (list): Preprocessed data samples of the batch.
    """

    def __init__(self, model: nn.Module, data_samples: Sequence) -> None:
        super().__init__()
        self.model = model
        self.data_samples = list(data_samples)

    def forward(self, inputs: torch.Tensor) -> Any:
        """Run the network.

        Args:
            inputs (Tensor): Preprocessed images of shape (B, 3, H, W).

        Returns:
            Any: The head's raw outputs (tensors, nested in tuples/lists).
        """
        if not isinstance(self.model, BaseSegmentor):
            return self.model(inputs, self.data_samples, mode='tensor')
        feats = self.model.extract_feat(inputs)
        head = self.model.decode_head
        if 'batch_data_samples' in inspect.signature(head.forward).parameters:
            return head(feats, self.data_samples)
        return head(feats)


def fixed_shape_batch(model: nn.Module,
                      shape: Tuple[int, int],
                      seed: int = 0) -> Dict[str, list]:
    """Make a one-image data batch of a fixed size, as a dataloader would.

    Args:
        model (nn.Module): The detector or segmentor (decides the data sample
            type).
        shape (tuple[int, int]): Image height and width.
        seed (int): Seed of the random image content. Defaults to 0.

    Returns:
        dict: ``inputs`` (a list with one uint8 tensor (3, H, W)) and
        ``data_samples`` (a list with one Det/SegDataSample).
    """
    height, width = shape
    if height <= 0 or width <= 0:
        raise ValueError(f'shape must be positive, got {shape}')
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(
        0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    sample_type = SegDataSample if isinstance(model,
                                              BaseSegmentor) else DetDataSample
    sample = sample_type(
        metainfo=dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            scale_factor=(1.0, 1.0)))
    return dict(inputs=[image], data_samples=[sample])


def split_batch(data_batch: Dict[str, list]) -> List[Dict[str, list]]:
    """Split a dataloader batch into one-image batches.

    Args:
        data_batch (dict): ``inputs`` and ``data_samples`` lists.

    Returns:
        list[dict]: One batch per image.
    """
    return [
        dict(inputs=[image], data_samples=[sample]) for image, sample in zip(
            data_batch['inputs'], data_batch['data_samples'])
    ]
