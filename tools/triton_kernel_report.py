#!/usr/bin/env python
"""Compile the Triton attention-pooling kernel for GPU targets, without a GPU, and report what
each compiled variant costs: registers per thread and register spills (ptxas -v).

    python tools/triton_kernel_report.py [--archs 80 90] [--dtypes float32 bfloat16 float16]
        [--layouts contiguous channels_last] [--shapes c2 c3 c4 c5 d8-c2 d8-c3 d8-c4 d8-c5]

For every shape, dtype and layout, the launch that gcnet.layers.attention_pool_triton would
make is specialised and compiled as Triton's launcher does, each distinct variant once per
target (gcnet.analysis.kernel_report). A Markdown table follows, then the number of variants
that multi-scale COCO training compiles per stage. The exit status is 1 when a variant spills.
"""

import argparse
import json
import sys

SHAPE_NAMES = ("c2", "c3", "c4", "c5", "d8-c2", "d8-c3", "d8-c4", "d8-c5")
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--archs", nargs="+", type=int, default=[80, 90], help="compute capabilities (80: A100, 90: H100)"
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        choices=sorted(DTYPE_NAMES),
        default=list(DTYPE_NAMES),
        help="dtypes of the pooled input (default: all)",
    )
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=["channels_last", "contiguous"],
        default=["channels_last", "contiguous"],
        help="memory formats of the input (default: both)",
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=SHAPE_NAMES,
        default=list(SHAPE_NAMES),
        help="c2-c5: of an 800x1216 COCO image; d8-*: of a 769x769 crop at output stride 8",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows to this JSON file")
    return parser


def main(args: argparse.Namespace) -> int:
    from gcnet.analysis import kernel_report

    try:
        rows = kernel_report.report_rows(args.archs, args.dtypes, args.layouts, args.shapes)
        variant_rows = kernel_report.multiscale_variants(args.dtypes, args.layouts, args.archs[-1])
    except ValueError as e:
        print(f"triton_kernel_report.py: {e}", file=sys.stderr)
        return 2
    print(kernel_report.markdown(rows, variant_rows, args.archs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "multiscale": variant_rows}, f, indent=1)
    spilling = kernel_report.spilling_rows(rows, args.archs)
    if spilling:
        print(f"triton_kernel_report.py: {len(spilling)} rows spill registers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(get_parser().parse_args()))
