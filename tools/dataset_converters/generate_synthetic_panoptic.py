# Copyright (c) The proscale Authors. All rights reserved.
"""Generate the embedded synthetic panoptic dataset (COCO panoptic format).

Example:
    python tools/dataset_converters/generate_synthetic_panoptic.py \
        data/synthetic --num-train 400 --num-val 100 --seed 0
    # a third of the images need long-range context (a distant cue)
    python tools/dataset_converters/generate_synthetic_panoptic.py \
        data/synthetic_context --context-fraction 0.33
"""
import argparse

from proscale.datasets import generate_synthetic_panoptic
from proscale.utils.cli import (
    UserInputError, report_user_errors)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the synthetic panoptic dataset')
    parser.add_argument('out_dir', help='dataset root, e.g. data/synthetic')
    parser.add_argument(
        '--num-train', type=int, default=400, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=100, help='validation images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--image-size', type=int, default=128, help='image side in pixels')
    parser.add_argument(
        '--context-fraction',
        type=float,
        default=0.0,
        help='share of images whose stuff class is given only by a cue '
        'patch in one corner (needs long-range context); the annotation '
        "files mark them (images[i]['context'])")
    parser.add_argument(
        '--force',
        action='store_true',
        help='replace an existing, different dataset at OUT_DIR')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with report_user_errors():
        try:
            generate_synthetic_panoptic(
                args.out_dir,
                num_train=args.num_train,
                num_val=args.num_val,
                seed=args.seed,
                image_size=args.image_size,
                force=args.force,
                context_fraction=args.context_fraction)
        except ValueError as error:
            raise UserInputError(str(error)) from None


if __name__ == '__main__':
    main()
