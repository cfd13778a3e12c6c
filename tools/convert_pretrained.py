#!/usr/bin/env python
"""Convert ImageNet weights into a Detectron2 checkpoint for a C4 person-search model.

    python tools/convert_pretrained.py --src resnet50.pth --format torchvision_resnet \
        --out R-50-person-search.pth

The output holds ``backbone.*`` (trunk) and ``roi_heads.res5.*`` (last stage) keys, see
:mod:`person_search.modeling.pretrained`; use it as ``MODEL.BACKBONE.PRETRAINED_FILE`` with
``PRETRAINED_FORMAT "converted"`` (loaded strictly into every head stage) or as
``MODEL.WEIGHTS`` for single-head-stage models. The file is written atomically.
"""

from __future__ import annotations

import argparse

import person_search  # noqa: F401  (applies the Detectron2 compatibility layer)
from person_search.modeling.pretrained import (
    PRETRAINED_FORMATS,
    read_pretrained_file,
    save_converted,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="source state dict (.pth)")
    parser.add_argument(
        "--format",
        required=True,
        choices=[f for f in PRETRAINED_FORMATS if f != "converted"],
        help="layout of --src",
    )
    parser.add_argument("--out", required=True, help="output Detectron2 checkpoint (.pth)")
    args = parser.parse_args(argv)
    parts = read_pretrained_file(args.src, args.format)
    save_converted(parts, args.out)
    print(
        f"wrote {args.out}: {len(parts.trunk)} trunk and {len(parts.head_stage)} head-stage tensors"
    )


if __name__ == "__main__":
    main()
