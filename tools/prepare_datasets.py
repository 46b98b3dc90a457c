#!/usr/bin/env python
"""Prepare datasets in the layout gcnet's builtin datasets expect, and the test suite's data.

    python tools/prepare_datasets.py balloon [--root DIR] [--url URL_OR_ZIP]
        downloads the public balloon release (or takes a local copy of balloon_dataset.zip)
        and converts its VIA annotations to COCO JSON, into DIR/balloon ($DETECTRON2_DATASETS,
        else ./datasets). A complete DIR/balloon is left as it is; a partial one is reported.
    python tools/prepare_datasets.py cityscapes [--root DIR]
        writes the *_gtFine_labelTrainIds.png label maps next to the *_gtFine_labelIds.png of
        DIR/cityscapes/gtFine (download Cityscapes from https://www.cityscapes-dataset.com
        first: leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, unpacked into
        DIR/cityscapes/).
    python tools/prepare_datasets.py ade20k [--root DIR]
        writes the DIR/ADEChallengeData2016/annotations_detectron2 label maps that detectron2's
        ade20k_sem_seg_{train,val} read (unpack ADEChallengeData2016.zip from
        http://sceneparsing.csail.mit.edu into DIR first).
    python tools/prepare_datasets.py voc_aug --sbd SBD_ROOT [--root DIR]
        converts the SBD label maps to DIR/VOC2012/SegmentationClassAug and writes
        DIR/VOC2012/ImageSets/Segmentation/aug.txt for voc_2012_aug_sem_seg_train (unpack VOC's
        VOCtrainval_11-May-2012.tar so that VOC2012/ is in DIR, and SBD's benchmark.tgz, whose
        benchmark_RELEASE folder is SBD_ROOT).
    python tools/prepare_datasets.py test-data [--output DIR] [--mirror URL]
        downloads the real files the test suite reads (tests/test_data.yaml) from their public
        sources, each checked against its sha256, into DIR ($GCNET_TEST_DATA, else
        datasets/gcnet-test-data in this checkout). Files already there are kept.
"""
import argparse
import logging
import os
import sys

from gcnet.utils.known_warnings import filter_known_warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DATA_MANIFEST = os.path.join(REPO_ROOT, "tests", "test_data.yaml")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    datasets = parser.add_subparsers(
        dest="dataset", required=True, metavar="{balloon,cityscapes,ade20k,voc_aug,test-data}"
    )
    root_help = "datasets folder (default: $DETECTRON2_DATASETS, else ./datasets)"
    balloon = datasets.add_parser("balloon", help="the balloon set of detectron2's tutorial")
    balloon.add_argument("--root", help=root_help)
    balloon.add_argument(
        "--url", help="where to download balloon_dataset.zip from (default: its public release), or a local copy of it"
    )
    datasets.add_parser("cityscapes", help="Cityscapes' train-id label maps").add_argument("--root", help=root_help)
    ade20k = datasets.add_parser("ade20k", help="ADE20K's label maps for detectron2's ade20k_sem_seg_{train,val}")
    ade20k.add_argument("--root", help=root_help)
    voc_aug = datasets.add_parser("voc_aug", help="Pascal VOC 2012's SBD aug label maps and aug.txt")
    voc_aug.add_argument("--root", help=root_help)
    voc_aug.add_argument("--sbd", required=True, help="the benchmark_RELEASE folder of SBD's benchmark.tgz")
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
    from gcnet.data import (
        check_balloon,
        create_train_id_labels,
        datasets_root,
        prepare_ade20k_labels,
        prepare_balloon,
        prepare_test_data,
        prepare_voc_aug,
    )

    if args.dataset == "test-data":
        written = prepare_test_data(TEST_DATA_MANIFEST, args.output, args.mirror)
        return f"Test data in {args.output} ({written} files written). Run the tests with: python -m pytest tests"
    root = args.root or datasets_root()
    if args.dataset == "balloon":
        existing = os.path.join(root, "balloon")
        if os.path.exists(existing):
            return f"{existing} is already prepared ({check_balloon(existing)}); left as it is"
        return f"Prepared {prepare_balloon(root, **({'url': args.url} if args.url else {}))}"
    if args.dataset == "ade20k":
        return f"Wrote {prepare_ade20k_labels(root)} ADE20K label maps"
    if args.dataset == "voc_aug":
        written, images = prepare_voc_aug(root, args.sbd)
        return f"Wrote {written} SegmentationClassAug label maps and {images} image ids to aug.txt"
    gt_root = os.path.join(root, "cityscapes", "gtFine")
    if not os.path.isdir(gt_root):
        raise FileNotFoundError(
            f"{gt_root} not found: unpack Cityscapes' gtFine_trainvaltest.zip into {os.path.join(root, 'cityscapes')}"
        )
    return f"Wrote {create_train_id_labels(gt_root)} train-id label maps under {gt_root}"


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    filter_known_warnings()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("iopath").setLevel(logging.CRITICAL)  # its failures reach the user as ours
    try:
        print(prepare(args))
    except (OSError, ValueError, ImportError) as e:
        print(f"prepare_datasets: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
