# Copyright (c) The proscale Authors. All rights reserved.
"""Convert Cityscapes fine annotations to COCO-panoptic files for mmdet.

Runs cityscapesscripts' ``createPanopticImgs`` (the official panoptic ground
truth, ``gtFine/cityscapes_panoptic_{split}.json`` + PNG folder, used by the
official evaluation) and rearranges it for mmdet's ``CocoPanopticDataset``
(``annotations/cityscapes_panoptic_{split}.json`` + PNG folder).

Example:
    python tools/dataset_converters/cityscapes_panoptic.py data/cityscapes
"""
import argparse
import os.path as osp

from proscale.datasets.converters import (
    convert_cityscapes_panoptic)
from proscale.utils.cli import report_user_errors


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert Cityscapes gtFine to COCO panoptic format')
    parser.add_argument(
        'data_root', help='Cityscapes root holding leftImg8bit/ and gtFine/')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=['train', 'val'],
        help='splits to convert')
    parser.add_argument(
        '--out-dir',
        help='folder for the mmdet files (default: DATA_ROOT/annotations)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with report_user_errors():
        if not osp.isdir(args.data_root):
            raise FileNotFoundError(
                f'Cityscapes root {args.data_root} does not exist')
        convert_cityscapes_panoptic(args.data_root, args.splits, args.out_dir)


if __name__ == '__main__':
    main()
