#!/usr/bin/env python
"""Export a detector (Mask R-CNN), a semantic segmentation model or a GC-ResNet backbone to
TorchScript and/or ONNX, and check the export against the eager model.

    python tools/export_model.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py \\
        --format torchscript onnx --output exported/ --sample-image photo.jpg --check-images balloon/val \\
        --opts train.init_checkpoint=gcnet://mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco

--export model exports a detector (detectron2's GeneralizedRCNN) or a segmentation model with
its inference; --export backbone the bottom-up GC-ResNet of the config's backbone. The model is
traced on the image of --sample-image (resized as the test loader does) or a random one of
--input-size, and writes <output>/model.ts and/or model.onnx (one trace serves both formats of
a detector). The export is then run on the traced input: a detector's detections must match the
eager model's (gcnet.export.DetectionTolerance, also on every --check-images image, at its own
size), other models' outputs must not differ by more than --tolerance. --benchmark N times the
exported and the eager model on the traced input. The exports carry each fixed BatchNorm folded
into its conv (--no-fold-norm: as the model has them). <output>/config.yaml is the config of the
export (with --opts): its test loader makes the exported model's input (README.md, Export).
The export itself is gcnet.apps.export_and_check.
"""

import argparse
import sys

from gcnet.utils.argument_parser import add_inference_arguments
from gcnet.utils.known_warnings import filter_known_warnings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=("torchscript", "onnx"), nargs="+", required=True)  # EXPORT_FORMATS
    parser.add_argument("--export", choices=["backbone", "model"], default="model")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for model.ts/.onnx and config.yaml")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sample-image", metavar="FILE", help="trace on this image")
    source.add_argument("--input-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument(
        "--check-images",
        nargs="+",
        default=[],
        metavar="PATH",
        help="detectors: also compare on these images (files, folders, globs)",
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-3, help="backbones and segmentation: largest accepted |exported - eager|"
    )
    parser.add_argument(
        "--benchmark",
        type=int,
        default=0,
        metavar="N",
        help="time the exported and eager models N times on the traced input",
    )
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    add_inference_arguments(parser, runtime=False)
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)  # --help and bad options are answered before the slow imports
    filter_known_warnings()
    from detectron2.utils.logger import setup_logger

    import gcnet.model_zoo  # noqa: F401  (gcnet:// weights)
    from gcnet.apps import export_and_check
    from gcnet.engine import INFERENCE_KEYS, load_config

    setup_logger(name="gcnet")
    try:
        ok = export_and_check(
            load_config(args.config_file, args.opts, required=INFERENCE_KEYS),
            formats=args.format,
            output=args.output,
            what=args.export,
            tolerance=args.tolerance,
            sample_image=args.sample_image,
            input_size=None if args.sample_image else tuple(args.input_size),
            check_images=args.check_images,
            benchmark_repeats=args.benchmark,
            fold_norm=args.fold_norm,
        )
    except (ValueError, OSError) as e:  # bad input, an unwritable output, a download that cannot be made
        print(f"export_model: {e}", file=sys.stderr)
        return 2
    if not ok:
        print("export_model: the exported model does not match the eager one (see above)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
