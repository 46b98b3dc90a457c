#!/usr/bin/env python
"""Export a GC-ResNet backbone or a semantic segmentation model to TorchScript or ONNX.

    python tools/export_model.py --config-file configs/Cityscapes-SemanticSegmentation/mmseg_gcnet_R_50_D8_512x1024_40k.py \\
        --format onnx --output exported/ --opts train.init_checkpoint=gcnet://mmseg/gcnet_r50-d8_512x1024_40k_cityscapes

--export backbone exports the config's GC-ResNet (the bottom-up backbone of an FPN config);
--export model exports a segmentation model with its inference. The model is traced on the
image of --sample-image (resized as the test loader does) or a random one of --input-size;
the exported model is then run on that input and its largest difference from the eager
model printed (and checked against --tolerance). Writes <output>/model.ts or model.onnx.
"""
import argparse
import os
import sys

import numpy as np
import torch

from detectron2.config import instantiate
from detectron2.utils.logger import setup_logger
from detectron2.utils.registry import locate

import gcnet.model_zoo  # noqa: F401  (gcnet:// weights)
from gcnet.data import read_image
from gcnet.engine import GCNetCheckpointer, TestPreprocessor, load_config
from gcnet.export import EXPORT_FORMATS, eager_outputs, export_onnx, export_torchscript
from gcnet.modeling import ContextSegmentor

FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}


def build_model(cfg, what: str):
    """What to export, in eval mode with the weights of ``train.init_checkpoint``: the
    segmentation model ("model"), or the bottom-up GC-ResNet of the config's backbone
    ("backbone")."""
    target = cfg.model._target_
    target = locate(target) if isinstance(target, str) else target
    if what == "model" and not (isinstance(target, type) and issubclass(target, ContextSegmentor)):
        raise ValueError(
            f"--export model supports semantic segmentation models (ContextSegmentor), got "
            f"{getattr(target, '__name__', target)}; use --export backbone"
        )
    model = instantiate(cfg.model).eval()
    if cfg.train.init_checkpoint:
        GCNetCheckpointer(model).load(cfg.train.init_checkpoint)
    if what == "model":
        return model
    backbone = model.backbone
    return getattr(backbone, "bottom_up", backbone).eval()


def example_input(cfg, model, args) -> torch.Tensor:
    """The traced input: the sample image as the test loader prepares it (segmentation), or as
    the model normalizes it (backbone); else a random image of --input-size."""
    if args.sample_image:
        prepared = TestPreprocessor(cfg)(read_image(args.sample_image, format="BGR"))["image"]
    else:
        height, width = args.input_size
        prepared = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (3, height, width)).astype("float32"))
    if isinstance(model, ContextSegmentor):
        return prepared
    mean = torch.tensor(cfg.model.pixel_mean).view(-1, 1, 1)
    std = torch.tensor(cfg.model.pixel_std).view(-1, 1, 1)
    return ((prepared - mean) / std)[None]


def run_exported(fmt: str, path: str, example: torch.Tensor):
    if fmt == "torchscript":
        with torch.no_grad():
            return [t.numpy() for t in torch.jit.load(path)(example)]
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": example.numpy()})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    parser.add_argument("--export", choices=["backbone", "model"], default="model")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for model.ts / model.onnx")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sample-image", metavar="FILE", help="trace on this image")
    source.add_argument("--input-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest accepted |exported - eager|")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    setup_logger(name="gcnet")
    try:
        cfg = load_config(args.config_file, args.opts)
        if args.sample_image and not os.path.isfile(args.sample_image):
            raise ValueError(f"--sample-image {args.sample_image}: no such file")
        model = build_model(cfg, args.export)
        example = example_input(cfg, model, args)
        path = os.path.join(args.output, FILE_NAMES[args.format])
        if args.format == "torchscript":
            export_torchscript(model, example, path)
        else:
            export_onnx(model, example, path)
        eager = eager_outputs(model, example)
        exported = run_exported(args.format, path, example)
        difference = max(float(np.abs(e.numpy() - x).max()) for e, x in zip(eager, exported))
    except ValueError as e:
        print(f"export_model: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {path}; largest difference from the eager model on the traced input: {difference:.3g}")
    if difference > args.tolerance:
        print(f"export_model: the exported model differs from the eager one by {difference:.3g} > --tolerance {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
