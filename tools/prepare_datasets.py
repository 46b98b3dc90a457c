#!/usr/bin/env python
"""Prepare datasets in the layout gcnet's builtin datasets expect (gcnet.data.prepare_dataset).

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

Downloads time out after $GCNET_DOWNLOAD_TIMEOUT seconds (CONNECT,READ; default 10,60).
The test suite's files come from `python -m tests.fetch_test_data` (DEVELOPERS.md).
"""

import argparse
import logging
import os
import subprocess
import sys

from gcnet.utils.known_warnings import filter_known_warnings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="{balloon,cityscapes,ade20k,voc_aug}")
    root_help = "datasets folder (default: $DETECTRON2_DATASETS, else ./datasets)"
    balloon = datasets.add_parser("balloon", help="the balloon set of detectron2's tutorial")
    balloon.add_argument("--root", default="", help=root_help)
    balloon.add_argument(
        "--url", help="where to download balloon_dataset.zip from (default: its public release), or a local copy of it"
    )
    cityscapes = datasets.add_parser("cityscapes", help="Cityscapes' train-id label maps")
    cityscapes.add_argument("--root", default="", help=root_help)
    ade20k = datasets.add_parser("ade20k", help="ADE20K's label maps for detectron2's ade20k_sem_seg_{train,val}")
    ade20k.add_argument("--root", default="", help=root_help)
    voc_aug = datasets.add_parser("voc_aug", help="Pascal VOC 2012's SBD aug label maps and aug.txt")
    voc_aug.add_argument("--root", default="", help=root_help)
    voc_aug.add_argument("--sbd", required=True, help="the benchmark_RELEASE folder of SBD's benchmark.tgz")
    datasets.add_parser("test-data", help="deprecated: python -m tests.fetch_test_data [--output DIR] [--mirror URL]")
    return parser


def main(argv=None) -> int:
    parser = get_parser()
    args, options = parser.parse_known_args(argv)
    if args.dataset == "test-data":
        print("prepare_datasets: test-data is now `python -m tests.fetch_test_data`", file=sys.stderr)
        checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run([sys.executable, "-m", "tests.fetch_test_data", *options], cwd=checkout).returncode
    if options:
        parser.error(f"unrecognized arguments: {' '.join(options)}")
    filter_known_warnings()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Here, not at the top: --help and bad arguments are answered without loading detectron2.
    from gcnet.data import prepare_dataset

    options = {key: value for key in ("url", "sbd") if (value := getattr(args, key, None))}
    try:
        print(prepare_dataset(args.dataset, args.root, **options))
    except (OSError, ValueError, ImportError) as e:
        print(f"prepare_datasets: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
