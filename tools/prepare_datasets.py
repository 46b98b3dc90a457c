#!/usr/bin/env python
"""Prepare datasets in the layout gcnet's builtin datasets expect, and the test suite's data.

    python tools/prepare_datasets.py balloon [--root DIR] [--url URL_OR_ZIP]
        downloads the public balloon release (or takes a local copy of balloon_dataset.zip)
        and converts its VIA annotations to COCO JSON, into DIR/balloon ($DETECTRON2_DATASETS,
        else ./datasets).
    python tools/prepare_datasets.py cityscapes [--root DIR]
        writes the *_gtFine_labelTrainIds.png label maps next to the *_gtFine_labelIds.png of
        DIR/cityscapes/gtFine (download Cityscapes from https://www.cityscapes-dataset.com
        first: leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, unpacked into
        DIR/cityscapes/).
    python tools/prepare_datasets.py test-data [--output DIR] [--mirror URL]
        downloads the real files the test suite reads (tests/test_data.yaml) from their public
        sources, each checked against its sha256, into DIR ($GCNET_TEST_DATA, else
        datasets/gcnet-test-data in this checkout). Files already there are kept.
"""
import argparse
import logging
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DATA_MANIFEST = os.path.join(REPO_ROOT, "tests", "test_data.yaml")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="{balloon,cityscapes,test-data}")
    root_help = "datasets folder (default: $DETECTRON2_DATASETS, else ./datasets)"
    balloon = datasets.add_parser("balloon", help="the balloon set of detectron2's tutorial")
    balloon.add_argument("--root", help=root_help)
    balloon.add_argument(
        "--url", help="where to download balloon_dataset.zip from (default: its public release), or a local copy of it"
    )
    datasets.add_parser("cityscapes", help="Cityscapes' train-id label maps").add_argument("--root", help=root_help)
    test_data = datasets.add_parser("test-data", help="the real files the test suite reads")
    test_data.add_argument(
        "--output",
        default=os.environ.get("GCNET_TEST_DATA") or os.path.join(REPO_ROOT, "datasets", "gcnet-test-data"),
        help="where to write them (default: $GCNET_TEST_DATA, else datasets/gcnet-test-data)",
    )
    test_data.add_argument("--mirror", default="", help="a base URL to use instead of https://raw.githubusercontent.com")
    return parser


def prepare(args) -> str:
    """Prepare the dataset ``args`` names; return what to print."""
    from gcnet.data import create_train_id_labels, datasets_root, prepare_balloon, prepare_test_data

    if args.dataset == "test-data":
        written = prepare_test_data(TEST_DATA_MANIFEST, args.output, args.mirror)
        return f"Test data in {args.output} ({written} files written). Run the tests with: python -m pytest tests"
    root = args.root or datasets_root()
    if args.dataset == "balloon":
        return f"Prepared {prepare_balloon(root, **({'url': args.url} if args.url else {}))}"
    gt_root = os.path.join(root, "cityscapes", "gtFine")
    if not os.path.isdir(gt_root):
        raise FileNotFoundError(
            f"{gt_root} not found: unpack Cityscapes' gtFine_trainvaltest.zip into {os.path.join(root, 'cityscapes')}"
        )
    return f"Wrote {create_train_id_labels(gt_root)} train-id label maps under {gt_root}"


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("iopath").setLevel(logging.CRITICAL)  # its failures reach the user as ours
    try:
        print(prepare(args))
    except (OSError, ValueError) as e:
        print(f"prepare_datasets: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
