#!/usr/bin/env python
"""Prepare datasets in the layout gcnet's builtin datasets expect, under --root
($DETECTRON2_DATASETS, else ./datasets).

    python tools/prepare_datasets.py balloon [--url URL]
        downloads the public balloon release and converts its VIA annotations to COCO JSON.
    python tools/prepare_datasets.py cityscapes
        writes the *_gtFine_labelTrainIds.png label maps next to the *_gtFine_labelIds.png of
        cityscapes/gtFine (download Cityscapes from https://www.cityscapes-dataset.com first:
        leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, unpacked into cityscapes/).
    python tools/prepare_datasets.py ade20k
        writes the ADEChallengeData2016/annotations_detectron2 label maps that detectron2's
        ade20k_sem_seg_{train,val} read (unpack ADEChallengeData2016.zip from
        http://sceneparsing.csail.mit.edu first).
    python tools/prepare_datasets.py voc_aug --sbd SBD_ROOT
        converts the SBD label maps to VOC2012/SegmentationClassAug and writes
        VOC2012/ImageSets/Segmentation/aug.txt for voc_2012_aug_sem_seg_train (unpack VOC's
        VOCtrainval_11-May-2012.tar so that VOC2012/ is under the root, and SBD's
        benchmark.tgz, whose benchmark_RELEASE folder is SBD_ROOT).
"""
import argparse
import logging
import os
import sys

from gcnet.data import (
    create_train_id_labels,
    datasets_root,
    prepare_ade20k_labels,
    prepare_balloon,
    prepare_voc_aug,
)
from gcnet.data.balloon import BALLOON_URL


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=["balloon", "cityscapes", "ade20k", "voc_aug"])
    parser.add_argument(
        "--root",
        default=datasets_root(),
        help="datasets folder (default: $DETECTRON2_DATASETS, else ./datasets)",
    )
    parser.add_argument("--url", default=BALLOON_URL, help="where to download balloon from")
    parser.add_argument("--sbd", help="voc_aug: SBD's benchmark_RELEASE folder")
    args = parser.parse_args(argv)
    if args.dataset == "voc_aug" and not args.sbd:
        parser.error("voc_aug needs --sbd, the benchmark_RELEASE folder of SBD's benchmark.tgz")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.dataset == "balloon":
            print(f"Prepared {prepare_balloon(args.root, args.url)}")
        elif args.dataset == "ade20k":
            print(f"Wrote {prepare_ade20k_labels(args.root)} ADE20K label maps")
        elif args.dataset == "voc_aug":
            written, images = prepare_voc_aug(args.root, args.sbd)
            print(f"Wrote {written} SegmentationClassAug label maps and {images} image ids to aug.txt")
        else:
            gt_root = os.path.join(args.root, "cityscapes", "gtFine")
            if not os.path.isdir(gt_root):
                raise FileNotFoundError(
                    f"{gt_root} not found: unpack Cityscapes' gtFine_trainvaltest.zip into "
                    f"{os.path.join(args.root, 'cityscapes')}"
                )
            print(f"Wrote {create_train_id_labels(gt_root)} train-id label maps under {gt_root}")
    except (OSError, ValueError, ImportError) as e:
        print(f"prepare_datasets: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
