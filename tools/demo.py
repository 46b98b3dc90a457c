#!/usr/bin/env python
"""Run a GCNet model on images, a video or a webcam and draw its predictions.

    python tools/demo.py --model mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco \\
        --input photos/ --output out/ [--show-context]
    python tools/demo.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py \\
        --input "photos/*.jpg" --output out/ --opts train.init_checkpoint=output/model_final.pth

Instances (masks, boxes, classes, scores above --confidence-threshold) or the semantic map are
drawn with detectron2's Visualizer; each output has its input's size, up to 9.4 megapixels
(3072x3072; larger images are drawn scaled down to that). --show-context also writes, for each
image, the attention map of chosen GC blocks (softmax_j(W_k x_j), Fig. 5 of the paper) as a
heatmap over the image: <name>_gc_<block><ext>. The demo itself is gcnet.apps.run_demo.
"""

import argparse
import sys

from gcnet.utils.argument_parser import add_inference_arguments, inference_overrides
from gcnet.utils.known_warnings import filter_known_warnings


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", metavar="FILE", help="a LazyConfig (.py or .yaml)")
    model.add_argument("--model", metavar="NAME", help="a model zoo name (python -m gcnet.model_zoo list)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", metavar="PATH", help="image files, folders or globs")
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    source.add_argument("--webcam", action="store_true", help="the first camera")
    parser.add_argument(
        "--output",
        metavar="PATH",
        help="a folder, or a file (.jpg, .png ...) for a single image or (.mp4) for a video; "
        "without it, outputs are shown in a window (which needs a display)",
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="the lowest score of a drawn instance")
    parser.add_argument("--show-context", action="store_true", help="also write GC attention heatmaps (images only)")
    parser.add_argument(
        "--context-blocks",
        nargs="+",
        metavar="PATTERN",
        help="GC blocks to show, as module-name globs (default: the last block of each stage), "
        "e.g. '*res4.5.context_block'",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the config's train.device, else cuda if any)")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    add_inference_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)  # --help and bad options are answered before the slow imports
    filter_known_warnings()
    from detectron2.utils.logger import setup_logger

    from gcnet.apps import model_config, run_demo

    setup_logger(name="gcnet")
    setup_logger(name="fvcore")
    try:
        cfg = model_config(args.model, args.config_file, args.opts)
        return run_demo(
            cfg,
            confidence_threshold=args.confidence_threshold,
            inputs=args.input,
            video_input=args.video_input,
            output=args.output,
            show_context=args.show_context,
            context_blocks=args.context_blocks,
            device=args.device,
            inference_overrides=inference_overrides(args),
        )
    except (ValueError, OSError) as e:  # bad input, a missing file, a download that cannot be made
        print(f"demo: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
