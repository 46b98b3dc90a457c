#!/usr/bin/env python
"""Convert labelme annotations (a JSON file beside each image) to one COCO instances file,
for training on your own dataset (README "Train on your own dataset"; gcnet.data.labelme).

    python tools/labelme_to_coco.py my_data/train my_data/train.json

Polygons, rectangles and circles become instances (shapes sharing a label and group id, one
instance); lines and points are skipped with a warning, and so are shapes labelled
__ignore__ or _background_ (labelme's placeholders, not classes). Categories are numbered
1..K in label order; image paths are relative to the folder, which is the dataset's image_root.
"""

import argparse
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

    from gcnet.data.labelme import write_labelme_coco

    setup_logger(name="gcnet", abbrev_name="gcnet")
    try:
        coco = write_labelme_coco(args.folder, args.output, overwrite=args.overwrite)
    except (OSError, ValueError) as e:
        print(f"labelme_to_coco: {e}", file=sys.stderr)
        return 2
    names = ", ".join(c["name"] for c in coco["categories"])
    images, instances, categories = (len(coco[k]) for k in ("images", "annotations", "categories"))
    print(f"Wrote {args.output}: {images} images, {instances} instances of {categories} categories ({names})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
