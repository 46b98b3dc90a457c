#!/usr/bin/env python
"""Convert labelme annotations (a JSON file beside each image) to one COCO instances file,
for training on your own dataset (README "Train on your own dataset").

    python tools/labelme_to_coco.py my_data/train my_data/train.json

Polygons, rectangles and circles become instances (shapes sharing a label and group id, one
instance); lines and points are skipped with a warning. Categories are numbered 1..K in label
order; image paths are relative to the folder, which is the dataset's image_root.
"""
import argparse
import json
import os
import sys


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the folder of images and their labelme .json files (searched recursively)")
    parser.add_argument("output", help="the COCO instances file to write (.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    # Imported after the arguments are parsed, so that --help answers at once.
    from detectron2.utils.logger import setup_logger

    from gcnet.data.labelme import labelme_to_coco
    from gcnet.utils.file_io import atomic_write

    setup_logger(name="gcnet", abbrev_name="gcnet")
    try:
        if not os.path.isdir(args.folder):
            raise ValueError(f"{args.folder}: no such folder")
        if os.path.exists(args.output) and not args.overwrite:
            raise ValueError(f"{args.output} exists; pass --overwrite to replace it")
        coco = labelme_to_coco(args.folder)
    except ValueError as e:
        print(f"labelme_to_coco: {e}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    atomic_write(args.output, lambda f: f.write(json.dumps(coco).encode()))
    names = ", ".join(c["name"] for c in coco["categories"])
    print(f"Wrote {args.output}: {len(coco['images'])} images, {len(coco['annotations'])} instances of {len(coco['categories'])} categories ({names})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
