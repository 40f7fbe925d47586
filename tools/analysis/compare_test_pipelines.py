# Copyright (c) The proscale Authors. All rights reserved.
"""Compare the network inputs of two configs' test pipelines on images.

Example (mmdet's default test resize vs detectron2's exact one):
    CFG=configs/proscale/mask2former_r50_proscale-333_8xb2-lsj-50e_coco-panoptic
    python tools/analysis/compare_test_pipelines.py \
        ${CFG}.py ${CFG}_d2-test.py IMAGE [IMAGE ...]
"""
import argparse
from typing import List, Optional

from proscale.analysis.pipeline_comparison import compare_pipelines
from proscale.utils.cli import dump_json, load_config, report_user_errors


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Compare the network inputs two configs\' test '
        'pipelines give for the same images')
    parser.add_argument('config_a', help='first config (its preprocessor '
                        'normalises both)')
    parser.add_argument('config_b', help='second config')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--json', help='also write the rows to this file')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with report_user_errors():
        rows = compare_pipelines(
            load_config(args.config_a), load_config(args.config_b),
            args.images)
    for row in rows:
        same = row['shape_a'] == row['shape_b']
        detail = (f"max |diff| {row['max_abs_diff']:.4g}, "
                  f"{100 * row['fraction_different']:.2f}% of values differ"
                  if same else 'sizes differ')
        print(f"{row['image']}: {row['shape_a']} vs {row['shape_b']}: "
              f'{detail}')
    dump_json(rows, args.json)


if __name__ == '__main__':
    main()
