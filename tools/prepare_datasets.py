#!/usr/bin/env python
"""Prepare datasets in the layout gcnet's builtin datasets expect, under --root
($DETECTRON2_DATASETS, else ./datasets).

    python tools/prepare_datasets.py balloon [--url URL]
        downloads the public balloon release and converts its VIA annotations to COCO JSON.
    python tools/prepare_datasets.py cityscapes
        writes the *_gtFine_labelTrainIds.png label maps next to the *_gtFine_labelIds.png of
        cityscapes/gtFine (download Cityscapes from https://www.cityscapes-dataset.com first:
        leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, unpacked into cityscapes/).
"""
import argparse
import logging
import os
import sys

from gcnet.data import create_train_id_labels, datasets_root, prepare_balloon
from gcnet.data.balloon import BALLOON_URL


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=["balloon", "cityscapes"])
    parser.add_argument(
        "--root",
        default=datasets_root(),
        help="datasets folder (default: $DETECTRON2_DATASETS, else ./datasets)",
    )
    parser.add_argument("--url", default=BALLOON_URL, help="where to download balloon from")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.dataset == "balloon":
            print(f"Prepared {prepare_balloon(args.root, args.url)}")
        else:
            gt_root = os.path.join(args.root, "cityscapes", "gtFine")
            if not os.path.isdir(gt_root):
                raise FileNotFoundError(
                    f"{gt_root} not found: unpack Cityscapes' gtFine_trainvaltest.zip into "
                    f"{os.path.join(args.root, 'cityscapes')}"
                )
            print(f"Wrote {create_train_id_labels(gt_root)} train-id label maps under {gt_root}")
    except (OSError, ValueError) as e:
        print(f"prepare_datasets: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
