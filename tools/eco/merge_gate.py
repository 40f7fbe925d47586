# Copyright (c) The proscale Authors. All rights reserved.
"""Merge a trained exit gate into its parent's checkpoint.

The merged checkpoint runs gated inference (each image at the exit its gate
picks) through ``tools/test.py`` with a gated config, one that sets
``model.gate`` and ``model.test_cfg.exit_layer='gate'``.

Example:
    GATED=configs/eco_m2f/eco-m2f-gated_r18_1xb4-tiny_synthetic-panoptic.py
    python tools/eco/merge_gate.py PARENT.pth gate.pth --out merged.pth \
        --config $GATED
    python tools/test.py $GATED merged.pth
"""
import argparse
from typing import List, Optional

from proscale.eco.provenance import check_parent_checkpoint
from proscale.models.gates import load_gate, merge_gate
from proscale.utils.cli import (UserInputError, check_checkpoint, load_config,
                                report_user_errors)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Merge a trained exit gate (tools/eco/train_gate.py) '
        'into the parent checkpoint')
    parser.add_argument('parent', help='checkpoint of the early-exit parent')
    parser.add_argument('gate', help='gate file from tools/eco/train_gate.py')
    parser.add_argument('--out', required=True, help='merged checkpoint')
    parser.add_argument(
        '--config',
        help='gated config the merged checkpoint is for: its model.gate '
        'must match the trained gate')
    parser.add_argument(
        '--force',
        action='store_true',
        help='merge a gate trained on data derived from another parent '
        'checkpoint (a warning instead of an error)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with report_user_errors():
        gate_cfg = None
        if args.config is not None:
            model_cfg = load_config(args.config).model
            if model_cfg.get('gate') is None:
                raise ValueError(f'{args.config}: model.gate is not set; use '
                                 'a gated config')
            gate_cfg = model_cfg.gate
        check_checkpoint(args.parent)
        try:
            derived = load_gate(args.gate)[1].get('derived')
            check_parent_checkpoint(
                derived.get('checkpoint')
                if isinstance(derived, dict) else None, args.parent,
                f'gate file {args.gate}', args.force)
            meta = merge_gate(args.parent, args.gate, args.out, gate_cfg)
        except ValueError as error:  # a gate that does not fit the parent
            raise UserInputError(str(error)) from error
    print(f"merged the gate (exits {tuple(meta['gate_cfg']['exits'])}, beta "
          f"{meta['beta']:g}) into {args.out}")


if __name__ == '__main__':
    main()
