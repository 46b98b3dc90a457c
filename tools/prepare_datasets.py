#!/usr/bin/env python
"""Download and prepare datasets in the layout gcnet's builtin datasets expect.

    python tools/prepare_datasets.py balloon [--root $DETECTRON2_DATASETS] [--url URL]
"""
import argparse
import logging
import os
import sys

from gcnet.data.balloon import BALLOON_URL, prepare_balloon


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=["balloon"])
    parser.add_argument(
        "--root",
        default=os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")),
        help="datasets folder (default: $DETECTRON2_DATASETS, else ./datasets)",
    )
    parser.add_argument("--url", default=BALLOON_URL, help="where to download the release from")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = prepare_balloon(args.root, args.url)
    except (OSError, ValueError) as e:
        print(f"prepare_datasets: {e}", file=sys.stderr)
        return 1
    print(f"Prepared {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
