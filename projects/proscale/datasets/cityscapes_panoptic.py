# Copyright (c) The proscale Authors. All rights reserved.
"""Cityscapes panoptic segmentation in mmdet's COCO-panoptic format."""
import os.path as osp
import re

from mmdet.datasets import CocoPanopticDataset
from mmdet.registry import DATASETS

# ``{city}_{sequence}_{frame}_leftImg8bit.png``, the Cityscapes image naming.
_CITYSCAPES_IMAGE_NAME = re.compile(
    r'^(?P<city>[a-z]+)_\d{6}_\d{6}_leftImg8bit\.png$')


def cityscapes_city(file_name: str) -> str:
    """Return the city of a Cityscapes ``*_leftImg8bit.png`` image name.

    Args:
        file_name (str): The image file name (a path is allowed).

    Returns:
        str: The city, which is also the image's sub-folder of
        ``leftImg8bit/{split}/``.

    Raises:
        ValueError: If the name does not follow the Cityscapes naming
            ``{city}_{sequence:06d}_{frame:06d}_leftImg8bit.png``.
    """
    match = _CITYSCAPES_IMAGE_NAME.match(osp.basename(file_name))
    if match is None:
        raise ValueError(f"'{file_name}' is not a Cityscapes image name "
                         '({city}_{sequence:06d}_{frame:06d}_leftImg8bit.png)')
    return match.group('city')


@DATASETS.register_module()
class CityscapesPanopticDataset(CocoPanopticDataset):
    """Cityscapes panoptic segmentation (8 thing and 11 stuff classes).

    Reads the COCO-panoptic files written by
    :func:`proscale.datasets.converters.convert_cityscapes_panoptic`
    (``tools/dataset_converters/cityscapes_panoptic.py``). Category ids are
    the official Cityscapes label ids (``person`` is 24), so predictions
    mapped back through the annotation file are valid for the official
    evaluation and the test server; the classes are ordered things first, as
    Mask2Former's panoptic head requires. Image entries hold the bare image
    name; the image is read from ``data_prefix['img']/{city}/{name}``, the
    original ``leftImg8bit/{split}/{city}/`` layout, and the panoptic PNG
    from ``data_prefix['seg']/{name}``.

    Args:
        See :class:`mmdet.datasets.CocoPanopticDataset`.
    """

    METAINFO = {
        'classes':
        ('person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
         'bicycle', 'road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
         'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky'),
        'thing_classes': ('person', 'rider', 'car', 'truck', 'bus', 'train',
                          'motorcycle', 'bicycle'),
        'stuff_classes':
        ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
         'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky'),
        'palette': [(220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
                    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
                    (128, 64, 128), (244, 35, 232), (70, 70, 70),
                    (102, 102, 156), (190, 153, 153), (153, 153, 153),
                    (250, 170, 30), (220, 220, 0), (107, 142, 35),
                    (152, 251, 152), (70, 130, 180)]
    }

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Parse one image's annotation, reading it from its city folder.

        Args:
            raw_data_info (dict): ``raw_img_info`` and ``raw_ann_info`` of
                one image, as loaded from ``self.ann_file``.

        Returns:
            dict: The parsed annotation (see
            :meth:`CocoPanopticDataset.parse_data_info`).
        """
        data_info = super().parse_data_info(raw_data_info)
        file_name = raw_data_info['raw_img_info']['file_name']
        try:
            city = cityscapes_city(file_name)
        except ValueError as error:
            raise ValueError(f'{self.ann_file}: {error}') from None
        data_info['img_path'] = osp.join(self.data_prefix['img'], city,
                                         file_name)
        return data_info
