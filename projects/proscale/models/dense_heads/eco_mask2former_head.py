# Copyright (c) The proscale Authors. All rights reserved.
"""Mask2Former head whose transformer decoder can run on given encoder
outputs, so that several encoder exits share one backbone pass."""
from typing import List, NamedTuple, Sequence, Tuple, Union

import torch
from mmdet.models.dense_heads import Mask2FormerHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor


class PixelDecoderOutput(NamedTuple):
    """What a pixel decoder returns for one encoder exit.

    Attributes:
        mask_feature (Tensor): Per-pixel mask features at 1/4 resolution,
            shape (B, C, H/4, W/4).
        multi_scale_features (list[Tensor]): Encoder maps for the
            transformer decoder, coarse to fine ([1/32, 1/16, 1/8]), each of
            shape (B, C, H_i, W_i).
    """
    mask_feature: Tensor
    multi_scale_features: List[Tensor]


@MODELS.register_module()
class EcoMask2FormerHead(Mask2FormerHead):
    """Mask2Former head for early-exit encoders (ECO-M2F).

    Same arguments, parameters and outputs as mmdet's
    :class:`Mask2FormerHead`. mmdet's ``forward`` runs the pixel decoder and
    the transformer decoder in one method; here they are split so that
    :meth:`forward`, and therefore the inherited :meth:`loss` and
    :meth:`predict`, also accept a :class:`PixelDecoderOutput` in place of
    the backbone features. ``EcoMask2Former`` uses this to decode every exit
    of one encoder pass (``pixel_decoder.forward_exits``) without running
    the backbone and the encoder again.
    """

    def forward(self, x: Union[Sequence[Tensor], PixelDecoderOutput],
                batch_data_samples: SampleList) -> Tuple[List[Tensor]]:
        """Forward function.

        Args:
            x (Sequence[Tensor] | PixelDecoderOutput): Multi-scale backbone
                features, each of shape (B, C_i, H_i, W_i), which go through
                the pixel decoder, or the pixel decoder's output for one exit.
            batch_data_samples (list[:obj:`DetDataSample`]): The data
                samples (unused, kept for mmdet's interface).

        Returns:
            tuple[list[Tensor]]: Classification logits, each of shape
            (B, num_queries, cls_out_channels), and mask logits, each of
            shape (B, num_queries, H/4, W/4), for the initial queries and
            every transformer decoder layer.
        """
        if not isinstance(x, PixelDecoderOutput):
            x = PixelDecoderOutput(*self.pixel_decoder(x))
        return self.forward_transformer_decoder(x.mask_feature,
                                                x.multi_scale_features)

    def forward_transformer_decoder(
            self, mask_features: Tensor,
            multi_scale_memorys: List[Tensor]) -> Tuple[List[Tensor]]:
        """Run the masked-attention transformer decoder.

        Modified from mmdet 3.3's ``Mask2FormerHead.forward``
        (mmdet/models/dense_heads/mask2former_head.py): its part after the
        pixel decoder, unchanged.

        Args:
            mask_features (Tensor): Per-pixel mask features, shape
                (B, C, H/4, W/4).
            multi_scale_memorys (list[Tensor]): Encoder maps, coarse to
                fine, each of shape (B, C, H_i, W_i).

        Returns:
            tuple[list[Tensor]]: See :meth:`forward`.
        """
        batch_size = mask_features.shape[0]
        decoder_inputs = []
        decoder_positional_encodings = []
        for i in range(self.num_transformer_feat_level):
            decoder_input = self.decoder_input_projs[i](multi_scale_memorys[i])
            # shape (batch_size, c, h, w) -> (batch_size, h*w, c)
            decoder_input = decoder_input.flatten(2).permute(0, 2, 1)
            level_embed = self.level_embed.weight[i].view(1, 1, -1)
            decoder_input = decoder_input + level_embed
            mask = decoder_input.new_zeros(
                (batch_size, ) + multi_scale_memorys[i].shape[-2:],
                dtype=torch.bool)
            decoder_positional_encoding = self.decoder_positional_encoding(
                mask)
            decoder_positional_encoding = decoder_positional_encoding.flatten(
                2).permute(0, 2, 1)
            decoder_inputs.append(decoder_input)
            decoder_positional_encodings.append(decoder_positional_encoding)
        # shape (num_queries, c) -> (batch_size, num_queries, c)
        query_feat = self.query_feat.weight.unsqueeze(0).repeat(
            (batch_size, 1, 1))
        query_embed = self.query_embed.weight.unsqueeze(0).repeat(
            (batch_size, 1, 1))

        cls_pred_list = []
        mask_pred_list = []
        cls_pred, mask_pred, attn_mask = self._forward_head(
            query_feat, mask_features, multi_scale_memorys[0].shape[-2:])
        cls_pred_list.append(cls_pred)
        mask_pred_list.append(mask_pred)

        for i in range(self.num_transformer_decoder_layers):
            level_idx = i % self.num_transformer_feat_level
            # if a mask is all True (all background), then set it all False.
            mask_sum = (attn_mask.sum(-1) != attn_mask.shape[-1]).unsqueeze(-1)
            attn_mask = attn_mask & mask_sum
            layer = self.transformer_decoder.layers[i]
            query_feat = layer(
                query=query_feat,
                key=decoder_inputs[level_idx],
                value=decoder_inputs[level_idx],
                query_pos=query_embed,
                key_pos=decoder_positional_encodings[level_idx],
                cross_attn_mask=attn_mask,
                query_key_padding_mask=None,
                key_padding_mask=None)
            cls_pred, mask_pred, attn_mask = self._forward_head(
                query_feat, mask_features, multi_scale_memorys[
                    (i + 1) % self.num_transformer_feat_level].shape[-2:])
            cls_pred_list.append(cls_pred)
            mask_pred_list.append(mask_pred)

        return cls_pred_list, mask_pred_list
