# Copyright (c) The proscale Authors. All rights reserved.
"""Convert ADE20K (ADEChallengeData2016) to COCO-panoptic files for mmdet.

Runs mmdet's ``ade20k2coco.py`` (shipped with mmdet) and corrects the
segment boxes it computes wrongly for things.

Example:
    python tools/dataset_converters/ade20k_panoptic.py \
        data/ADEChallengeData2016
"""
import argparse

from proscale.datasets.converters import (
    convert_ade20k_panoptic)
from proscale.utils.cli import report_user_errors


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert ADE20K to COCO panoptic format')
    parser.add_argument(
        'data_root',
        help='ADEChallengeData2016 folder with images/, annotations/ and '
        'annotations_instance/')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with report_user_errors():
        convert_ade20k_panoptic(args.data_root)


if __name__ == '__main__':
    main()
