#!/usr/bin/env python
"""A web page to try a GCNet model on photos: its predictions and, beside them, the attention
maps of the GC blocks you choose (softmax_j(W_k x_j), Fig. 5 of the paper).

    python tools/web_demo.py --model mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco
    python tools/web_demo.py --config-file output/balloon_gc_r16/config.yaml \\
        --opts train.init_checkpoint=output/balloon_gc_r16/model_final.pth

then open http://127.0.0.1:7860 in a browser. Upload a photo or click an example; the
confidence threshold (detection models) and the GC blocks to show can be changed at any time.
Each attention map is drawn over the photo, min-max scaled, with its block's name and a colour
bar of the attention weights, and captioned with its entropy (1 = uniform) and its peak (x, y).
Detection (instance segmentation) and semantic segmentation configs both work. The model is
built once, when the server starts; the page serves one request at a time, the latest waiting.

The server listens on 127.0.0.1 only: --host 0.0.0.0 makes it reachable from other machines
(anyone who can reach the port can then use it). It serves the page, the example images and
to each browser its own uploads and results, nothing else (gcnet.apps.web_demo).
"""

import argparse
import sys

from gcnet.utils.argument_parser import add_inference_arguments, inference_overrides
from gcnet.utils.known_warnings import filter_known_warnings

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
MAX_UPLOAD_MB = 25
MAX_IMAGE_MEGAPIXELS = 50.0
NUM_EXAMPLES = 6


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", metavar="FILE", help="a LazyConfig (.py or .yaml), e.g. a run's config.yaml")
    model.add_argument("--model", metavar="NAME", help="a model zoo name (python -m gcnet.model_zoo list)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"the address to listen on (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the port (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--examples",
        nargs="+",
        metavar="PATH",
        help="example photos: files, folders or globs (default: the first images of the config's "
        f"test dataset, when it is on disk; at most {NUM_EXAMPLES} are shown)",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the config's train.device, else cuda if any)")
    parser.add_argument(
        "--max-megapixels", type=float, default=MAX_IMAGE_MEGAPIXELS, help="the largest photo accepted, in megapixels"
    )
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="the largest upload accepted, in MB")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    add_inference_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)  # --help and bad options are answered before the slow imports
    filter_known_warnings()
    from detectron2.utils.logger import setup_logger

    from gcnet.apps.web_demo import prepare_web_demo, serve

    setup_logger(name="gcnet")
    try:
        web_demo, examples, title = prepare_web_demo(
            model=args.model,
            config_file=args.config_file,
            opts=args.opts,
            examples=args.examples,
            num_examples=NUM_EXAMPLES,
            host=args.host,
            port=args.port,
            max_pixels=args.max_megapixels * 1e6,
            device=args.device,
            inference_overrides=inference_overrides(args),
        )
        serve(web_demo, examples, title, args.host, args.port, args.max_upload_mb)
    except (ValueError, OSError) as e:  # bad input, a missing file, a download that cannot be made
        print(f"web_demo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
