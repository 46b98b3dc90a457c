#!/usr/bin/env python
"""A web page to try a GCNet model on photos: its predictions and, beside them, the attention
maps of the GC blocks you choose (softmax_j(W_k x_j), Fig. 5 of the paper).

    python tools/web_demo.py --model mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco
    python tools/web_demo.py --config-file configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py \\
        --opts train.init_checkpoint=output/balloon_gc_r16/model_final.pth

then open http://127.0.0.1:7860 in a browser. Upload a photo or click an example; the
confidence threshold (detection models) and the GC blocks to show can be changed at any time.
Each attention map is drawn over the photo, min-max scaled, with its block's name and colour
bar, and captioned with its entropy (1 = uniform) and its peak. Detection (instance
segmentation) and semantic segmentation configs both work. The model is built once, when the
server starts; the page serves one request at a time, the latest waiting.

The server listens on 127.0.0.1 only: --host 0.0.0.0 makes it reachable from other machines
(anyone who can reach the port can then use it).
"""
import argparse
import logging
import os
import socket
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from gcnet.utils.known_warnings import filter_known_warnings

logger = logging.getLogger("gcnet.web_demo")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
MAX_UPLOAD_MB = 25
MAX_IMAGE_MEGAPIXELS = 50.0
NUM_EXAMPLES = 6
# Fonts the browser has, so that the page loads nothing from outside the server.
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", metavar="FILE", help="a LazyConfig (.py or .yaml)")
    model.add_argument("--model", metavar="NAME", help="a model zoo name (python -m gcnet.model_zoo list)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"the address to listen on (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the port to listen on (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--examples",
        nargs="+",
        metavar="PATH",
        help="example photos: files, folders or globs (default: the first images of the config's "
        f"test dataset, when it is on disk; at most {NUM_EXAMPLES} are shown)",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the config's train.device, cuda if available)")
    parser.add_argument(
        "--max-megapixels", type=float, default=MAX_IMAGE_MEGAPIXELS, help="the largest photo accepted, in megapixels"
    )
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="the largest upload accepted, in MB")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser


def unreadable_image(name: str, error: Exception) -> ValueError:
    """The message for a file that is not a readable image (or one too large to decode)."""
    from PIL import Image

    if isinstance(error, Image.DecompressionBombError):
        return ValueError(f"{name} is too large to decode safely ({error})")
    return ValueError(f"{name} is not an image this demo can read (an unknown format, truncated or corrupt)")


class WebDemo:
    """What the page runs, without the page: one model, built once; a photo in, the drawn
    predictions, the attention maps with their captions, and a one-line summary out.

    Args:
        predictor: a :class:`gcnet.engine.Predictor`.
        max_pixels: photos with more pixels are refused.
    """

    def __init__(self, predictor, max_pixels: float):
        from detectron2.modeling import GeneralizedRCNN

        from gcnet.analysis import default_context_blocks, find_context_blocks, short_block_name

        self.predictor = predictor
        self.max_pixels = max_pixels
        model = predictor.model
        default = default_context_blocks(model)
        every_block = find_context_blocks(model, ["*"]) if default else []
        # The page shows short names (res5.2); the model knows the full ones.
        self.blocks: Dict[str, str] = {short_block_name(name): name for name in every_block}
        self.default_blocks = [short_block_name(name) for name in default]
        self.detects_instances = isinstance(model, GeneralizedRCNN)

    def read(self, path: str):
        """The photo at ``path`` as a BGR array; a ValueError names what is wrong with it."""
        from PIL import Image

        from gcnet.data import read_image

        name = os.path.basename(path)
        try:
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on bad files
            raise unreadable_image(name, e) from None
        if width * height > self.max_pixels:
            raise ValueError(
                f"{name} is too large: {width}x{height} is {width * height / 1e6:.1f} megapixels, "
                f"the demo takes at most {self.max_pixels / 1e6:g}; use a smaller copy"
            )
        try:
            return read_image(path, format="BGR")
        except ValueError as e:
            raise unreadable_image(name, e) from None

    def _summary(self, predictions: Dict, threshold: float, seconds: float) -> str:
        device = self.predictor.device
        if "instances" in predictions:
            scores = predictions["instances"].scores
            shown = int((scores >= threshold).sum())
            if shown:
                text = f"{shown} instance{'s' if shown > 1 else ''} with a score of at least {threshold:.2f}"
            elif len(scores):
                text = f"No instance with a score of at least {threshold:.2f} (highest score {float(scores.max()):.2f})"
            else:
                text = "No instance detected"
        else:
            classes = self.predictor.metadata.get("stuff_classes", None)
            labels = predictions["sem_seg"].argmax(dim=0).flatten()
            shares = labels.bincount().float() / labels.numel()
            top = shares.argsort(descending=True)[:3]
            text = "Largest classes: " + ", ".join(
                f"{classes[i] if classes else i} {float(shares[i]):.0%}" for i in top.tolist() if shares[i] > 0
            )
        return f"{text}. {seconds:.1f} s on {device}."

    def run(
        self,
        path: str,
        threshold: float,
        blocks: Sequence[str],
        report: Callable[[float, str], None] = lambda fraction, what: None,
    ) -> Tuple:
        """The drawn predictions (RGB), [(attention map picture (RGB), caption)] for ``blocks``
        (short names), and a summary line; ``report(fraction, what)`` follows the progress."""
        from demo import Demo

        from gcnet.analysis import draw_attention_map, predict_with_attention, summarize_attention

        unknown = [b for b in blocks if b not in self.blocks]
        if unknown:
            raise ValueError(f"Not GC blocks of the model: {unknown}")
        report(0.0, "Reading the photo")
        image_bgr = self.read(path)
        report(0.1, "Running the model")
        start = time.perf_counter()
        if blocks:
            predictions, maps = predict_with_attention(self.predictor, image_bgr, [self.blocks[b] for b in blocks])
        else:  # none chosen, or a model without GC blocks
            predictions, maps = self.predictor(image_bgr), {}
        seconds = time.perf_counter() - start
        report(0.8, "Drawing")
        drawn = Demo(self.predictor, threshold, None).draw(image_bgr, predictions)
        image_rgb = image_bgr[:, :, ::-1].copy()
        height, width = image_rgb.shape[:2]
        gallery = [
            (
                draw_attention_map(image_rgb, maps[self.blocks[short]], short),
                f"{short}: {summarize_attention(maps[self.blocks[short]], (height, width))}",
            )
            for short in blocks
        ]
        return drawn, gallery, self._summary(predictions, threshold, seconds)


def build_app(web_demo: WebDemo, examples: Sequence[str], title: str):
    """The page: a gradio ``Blocks`` app around ``web_demo``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    import gradio as gr

    def page_error(error: ValueError) -> gr.Error:
        logger.warning(str(error))
        return gr.Error(str(error), print_exception=False)

    def checked_upload(preprocess):
        """gradio's reading of an upload, whose failures end in a message on the page."""

        def read(payload):
            try:
                return preprocess(payload)
            except Exception as e:
                raise page_error(unreadable_image(getattr(payload, "orig_name", None) or "The upload", e)) from None

        return read

    def run(photo: Optional[str], threshold: float, blocks: List[str], progress=gr.Progress()):
        if photo is None:
            return None, [], ""
        try:
            return web_demo.run(photo, threshold, blocks, report=lambda fraction, what: progress(fraction, desc=what))
        except ValueError as e:
            raise page_error(e) from None

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"## {title}\nUpload a photo or click an example.")
        with gr.Row():
            photo = gr.Image(label="Photo", type="filepath", image_mode=None, sources=["upload", "clipboard"], elem_id="photo")
            photo.preprocess = checked_upload(photo.preprocess)
            result = gr.Image(label="Predictions", interactive=False, elem_id="result")
        with gr.Row():
            threshold = gr.Slider(
                0.0, 1.0, value=0.5, step=0.05, label="Confidence threshold", visible=web_demo.detects_instances, elem_id="threshold"
            )
            blocks = gr.CheckboxGroup(
                list(web_demo.blocks), value=web_demo.default_blocks, label="GC blocks to show", elem_id="blocks"
            )
        summary = gr.Markdown(elem_id="summary")
        gallery = gr.Gallery(
            label="Attention maps (red: most attended; entropy 1 = uniform)", columns=3, object_fit="contain", elem_id="attention"
        )
        if examples:
            gr.Examples([[path] for path in examples], inputs=[photo], label="Examples")
        gr.on(
            [photo.change, threshold.release, blocks.change],
            run,
            inputs=[photo, threshold, blocks],
            outputs=[result, gallery, summary],
            concurrency_limit=1,
            trigger_mode="always_last",
        )
    return app


def default_examples(metadata) -> List[str]:
    """The first images of a test dataset's image folder, when it is on disk."""
    from gcnet.data import list_images

    folder = metadata.get("image_root", None) or metadata.get("image_dir", None)
    if not folder or not os.path.isdir(folder):
        return []
    try:
        return [path for path, _ in list_images([folder])[:NUM_EXAMPLES]]
    except ValueError:  # a folder without images
        return []


def list_examples(paths: Sequence[str]) -> List[str]:
    """The first images that ``--examples`` names."""
    from gcnet.data import list_images

    try:
        return [path for path, _ in list_images(paths)][:NUM_EXAMPLES]
    except ValueError as e:
        raise ValueError(str(e).replace("--input ", "--examples ", 1)) from None


def check_port(host: str, port: int) -> None:
    """Refuse, before the model is built, an address the server could not listen on."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); choose another --port") from None


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    filter_known_warnings()
    # Imported after the arguments are parsed, so that --help answers at once.
    from detectron2.utils.logger import setup_logger

    from demo import demo_config
    from gcnet.engine import Predictor

    setup_logger(name="gcnet")
    try:
        check_port(args.host, args.port)
        cfg = demo_config(args)
        examples = list_examples(args.examples) if args.examples else None
        start = time.perf_counter()
        predictor = Predictor(cfg, device=args.device)
    except ValueError as e:
        print(f"web_demo: {e}", file=sys.stderr)
        return 2
    logger.info(f"Built the model on {predictor.device} in {time.perf_counter() - start:.1f} s")
    if examples is None:
        examples = default_examples(predictor.metadata)
    title = f"GCNet: {args.model or os.path.splitext(os.path.basename(args.config_file))[0]}"
    app = build_app(WebDemo(predictor, args.max_megapixels * 1e6), examples, title)

    import gradio as gr

    app.queue().launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=int(args.max_upload_mb * 1024 * 1024),
        allowed_paths=sorted({os.path.dirname(os.path.abspath(path)) for path in examples}),
        theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"]),
        footer_links=[],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
