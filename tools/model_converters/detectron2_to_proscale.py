# Copyright (c) The proscale Authors. All rights reserved.
"""Convert a detectron2 Mask2Former / PRO-SCALE / ECO-M2F checkpoint.

The model is recognised from the checkpoint's keys and shapes (backbone and
its sizes, encoder stage split, TRC, gate, classes); the converted weights
are written only if they load with ``strict=True`` into the config's model.

Example:
    python tools/model_converters/detectron2_to_proscale.py \
        swint_proscale_3_3_3_coco.pth proscale_swin-t_coco.pth
    python tools/test.py configs/proscale/mask2former_swin-t-p4-w7-224_\
proscale-333_8xb2-lsj-50e_coco-panoptic.py proscale_swin-t_coco.pth
"""
import argparse
from typing import List, Optional

from proscale.converters import convert_checkpoint
from proscale.converters.detectron2_arch import CLASS_ORDERS
from proscale.utils.cli import add_cfg_options_argument, report_user_errors


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a detectron2 Mask2Former, PRO-SCALE or ECO-M2F '
        'checkpoint (.pth with a "model" dict, or a model-zoo .pkl) into an '
        'mmengine checkpoint of this project')
    parser.add_argument('src', help='detectron2 checkpoint')
    parser.add_argument('dst', help='mmengine checkpoint to write')
    parser.add_argument(
        '--config',
        help="config the weights are for (default: this project's config "
        'of the recognised model)')
    add_cfg_options_argument(parser)
    parser.add_argument(
        '--class-order',
        choices=CLASS_ORDERS,
        help='classifier row order (default: cityscapes for 19 classes, '
        'identity otherwise)')
    parser.add_argument(
        '--gate-exits',
        type=int,
        nargs='+',
        help='exits of an ECO-M2F gate in logit order (default: the last '
        'logit is the full encoder, one exit per layer below it)')
    parser.add_argument(
        '--trust-pickle',
        action='store_true',
        help='read a .pth holding objects other than tensors (e.g. trainer '
        'state) with torch.load(weights_only=False): only for trusted files')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with report_user_errors():
        arch, config, meta = convert_checkpoint(
            args.src,
            args.dst,
            config=args.config,
            cfg_options=args.cfg_options,
            class_order=args.class_order,
            gate_exits=args.gate_exits,
            trust_pickle=args.trust_pickle)
    print(f'{arch.describe()}\nwrote {args.dst} (sha256 of the source '
          f"{meta['sha256'][:12]}...), loads strictly into {config}")


if __name__ == '__main__':
    main()
