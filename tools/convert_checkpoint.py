#!/usr/bin/env python
"""Convert an upstream checkpoint (mmdetection, the original GCNet code, mmsegmentation, or an
ImageNet backbone) into a gcnet checkpoint for detectron2's checkpointer
(gcnet.model_zoo.convert_checkpoint).

    python tools/convert_checkpoint.py --converter mmdet upstream.pth converted.pth \\
        [--config configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py [key=value ...]]

Converters: mmdet (mmdetection v2/v3), mmdet_v1 (the original GCNet repository), mmseg,
torchvision_resnet, mmcv_resnet_v1c, deep_base_resnet. Every upstream key must find its place;
with --config, the result must also fill every parameter of the config's model exactly. Nothing
is written when either fails.
"""

import argparse
import sys

from gcnet.utils.known_warnings import filter_known_warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--converter", required=True, help="one of the converters above")
    parser.add_argument("input", help="upstream .pth file (loaded with torch.load(weights_only=True))")
    parser.add_argument("output", help="converted .pth file")
    parser.add_argument("--config", default="", help="LazyConfig whose model the result must fill")
    parser.add_argument("opts", nargs="*", help="key=value overrides of --config")
    args = parser.parse_intermixed_args(argv)
    if args.opts and not args.config:
        parser.error(f"overrides {args.opts} need --config")
    filter_known_warnings()
    # Here, not at the top: --help and bad arguments are answered without loading torch.
    from gcnet.model_zoo import convert_checkpoint

    try:
        convert_checkpoint(args.converter, args.input, args.output, args.config, args.opts)
    except (OSError, ValueError, KeyError) as e:
        print(f"convert_checkpoint: {e}", file=sys.stderr)
        return 1
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
