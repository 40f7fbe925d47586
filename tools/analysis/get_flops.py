# Copyright (c) The proscale Authors. All rights reserved.
"""Count the GFLOPs of a Mask2Former-style or DETR-family model by part.

Counts follow the papers (detectron2/fvcore convention, one multiply-add =
one FLOP) and add what mmengine misses: the masked attention
(``aten::baddbmm``) and the deformable attention sampling, which the papers
leave out and which is reported alone as ``msda_sampling``.

Examples:
    # one fixed input size, no dataset needed
    python tools/analysis/get_flops.py CONFIG --shape 800 1088
    # averaged over test images at their test sizes, as in the papers
    python tools/analysis/get_flops.py CONFIG --num-images 100 --json out.json
"""
import argparse
from typing import List, Optional

import torch
from mmengine.runner import Runner

from proscale.analysis import (average_flops, build_analysis_model,
                               count_flops, fixed_shape_batch, format_flops,
                               load_analysis_config)
from proscale.analysis.exit_flops import gated_path_key
from proscale.utils.cli import (add_cfg_options_argument, check_dataset_paths,
                                dump_json, positive_int, report_user_errors)

JSON_KEYS = ('total', 'backbone', 'encoder', 'decoder', 'msda_sampling',
             'params', 'num_images', 'shape')
DEFAULT_NUM_IMAGES = 100


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count the GFLOPs (backbone / encoder / decoder) of a '
        'Mask2Former-style detector or segmentor, or of a DETR-family '
        'detector (DINO, Deformable DETR)')
    parser.add_argument('config', help='config file (or pkg::path)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        '--shape',
        type=positive_int,
        nargs=2,
        metavar=('H', 'W'),
        help='count one input of this size (no dataset needed)')
    size.add_argument(
        '--num-images',
        type=positive_int,
        help='average over this many images of the test dataloader at '
        f'their test sizes (default: {DEFAULT_NUM_IMAGES})')
    parser.add_argument(
        '--checkpoint',
        help='weights to load; only matters for input-dependent paths such '
        'as a trained exit gate')
    parser.add_argument(
        '--device', default='cpu', help='device to trace on (default: cpu)')
    add_cfg_options_argument(parser)
    parser.add_argument('--json', help='write the figures to this JSON file')
    args = parser.parse_args(argv)
    if args.shape is None and args.num_images is None:
        args.num_images = DEFAULT_NUM_IMAGES
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    with report_user_errors():
        cfg = load_analysis_config(args.config, args.cfg_options)
        if args.shape is None:
            check_dataset_paths(cfg, ('test_dataloader', ), evaluators=False)
    with report_user_errors(cfg):
        torch.manual_seed(0)
        model = build_analysis_model(cfg, args.device, args.checkpoint)
        if args.shape is not None:
            result = count_flops(model, fixed_shape_batch(model, args.shape))
            result.update(num_images=1, shape=list(args.shape))
        else:
            dataloader = Runner.build_dataloader(cfg.test_dataloader)
            result = average_flops(model, dataloader, args.num_images,
                                   gated_path_key(model))
            result.update(shape=None)
    size = (f'input shape: {args.shape[0]}x{args.shape[1]}'
            if args.shape is not None else
            f"averaged over {result['num_images']} test images")
    print(f'{args.config} ({size})\n{format_flops(result)}')
    output = {key: result[key] for key in JSON_KEYS}
    dump_json(output, args.json)
    return output


if __name__ == '__main__':
    main()
