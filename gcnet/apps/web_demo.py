"""The web demo: a gradio page to try a model on photos, with its predictions and, beside them,
the attention maps of the GC blocks a visitor chooses (softmax_j(W_k x_j), Fig. 5 of the
paper). ``tools/web_demo.py`` is its command line::

    web_demo, examples, title = prepare_web_demo(
        config_file="output/my_run/config.yaml", examples=["photos/"], num_examples=6,
        host="127.0.0.1", port=7860, max_pixels=50e6,
    )
    serve(web_demo, examples, title, host="127.0.0.1", port=7860, max_upload_mb=25)

What the server serves: its page (gradio's own assets), the example images, and to each browser
its own uploads and the pictures drawn for it (:class:`~gcnet.apps.session_files.SessionFiles`),
all from a folder of its own that it removes when it stops. The examples are copied there when
the page is built; nothing else of the folders they come from is ever reachable.
"""

import contextlib
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from PIL import Image
from starlette.middleware import Middleware

from detectron2.modeling import GeneralizedRCNN

from gcnet.analysis import (
    default_context_blocks,
    draw_attention_map,
    find_context_blocks,
    short_block_name,
    summarize_attention,
)
from gcnet.data import list_images, read_image
from gcnet.engine import InferenceOptions, Predictor

from .demo import Demo
from .model_config import model_config, model_title
from .session_files import SessionFiles

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, from the import on
import gradio as gr  # noqa: E402

__all__ = [
    "WEB_MAX_DRAWN_PIXELS",
    "WebDemo",
    "build_page",
    "list_examples",
    "default_examples",
    "check_port",
    "prepare_web_demo",
    "serve",
]

logger = logging.getLogger("gcnet.web_demo")

# Pictures sent to a browser are drawn on at most 2048 x 2048 pixels.
WEB_MAX_DRAWN_PIXELS = 2048 * 2048
# Fonts the browser has, so that the page loads nothing from outside the server.
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
MONOSPACE_FONTS = ["ui-monospace", "monospace"]
# gradio's settings by environment variable that the server sets for itself (where it keeps
# uploads and cached examples) or ignores (folders that it would serve).
GRADIO_FOLDERS = ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE")
GRADIO_IGNORED = ("GRADIO_ALLOWED_PATHS",)


def unreadable_image(name: str, error: Exception) -> ValueError:
    """The message for a file that is not a readable image (or one too large to decode)."""
    if isinstance(error, Image.DecompressionBombError):
        return ValueError(f"{name} is too large to decode safely ({error})")
    return ValueError(f"{name} is not an image this demo can read (an unknown format, truncated or corrupt)")


class WebDemo:
    """What the page runs, without the page: one model, built once; a photo in, the drawn
    predictions, the attention maps with their captions, and a one-line summary out.

    Args:
        predictor: a :class:`gcnet.engine.Predictor`.
        max_pixels: photos with more pixels are refused.
        max_drawn_pixels: larger photos are drawn scaled down to this many pixels.
    """

    def __init__(self, predictor, max_pixels: float, max_drawn_pixels: float = WEB_MAX_DRAWN_PIXELS):
        self.predictor = predictor
        self.max_pixels = max_pixels
        self.max_drawn_pixels = max_drawn_pixels
        model = predictor.model
        default = default_context_blocks(model)
        every_block = find_context_blocks(model, ["*"]) if default else []
        # The page shows short names (res5.2), in the order of the network; the model knows the full ones.
        self.blocks: Dict[str, str] = {short_block_name(name): name for name in every_block}
        self.default_blocks = [short_block_name(name) for name in default]
        self.detects_instances = isinstance(model, GeneralizedRCNN)

    def read(self, path: str):
        """The photo at ``path`` as a BGR array; a ValueError names what is wrong with it."""
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

    def summary(self, predictions: Dict, threshold: float, seconds: float) -> str:
        """One line: the instances shown (or why none), or the largest classes; the time taken."""
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
        return f"{text}. {seconds:.1f} s on {self.predictor.device}."

    def run(
        self,
        path: str,
        threshold: float,
        blocks: Sequence[str],
        report: Callable[[float, str], None] = lambda fraction, what: None,
    ) -> Tuple:
        """The drawn predictions (RGB), [(attention map picture (RGB), caption)] for ``blocks``
        (short names) in the order of the network, and a summary line; ``report(fraction,
        what)`` follows the progress."""
        unknown = [b for b in blocks if b not in self.blocks]
        if unknown:
            raise ValueError(f"Not GC blocks of the model: {unknown}")
        order = list(self.blocks)
        blocks = sorted(set(blocks), key=order.index)
        report(0.0, "Reading the photo")
        image_bgr = self.read(path)
        report(0.1, "Running the model")
        demo = Demo(self.predictor, threshold, max_drawn_pixels=self.max_drawn_pixels)
        start = time.perf_counter()
        predictions, maps, canvas = demo.predict(image_bgr, [self.blocks[b] for b in blocks])
        seconds = time.perf_counter() - start
        report(0.8, "Drawing")
        canvas_rgb = canvas[:, :, ::-1].copy()
        gallery = []
        for short in blocks:
            weights = maps[self.blocks[short]]
            caption = f"{short}: {summarize_attention(weights, image_bgr.shape[:2])}"
            gallery.append((draw_attention_map(canvas_rgb, weights, short), caption))
        return demo.draw(canvas, predictions), gallery, self.summary(predictions, threshold, seconds)


def _page_function(web_demo: WebDemo) -> Callable:
    """What the page calls when the photo, the threshold or the blocks change: a bad photo's
    message is shown on the page."""

    # A gr.Progress() default is how gradio hands a function its progress tracker.
    def run(photo: Optional[dict], threshold: float, blocks: List[str], progress=gr.Progress()):  # noqa: B008
        if photo is None:
            return None, [], ""
        try:  # photo is gradio's record of the upload: its path in the upload folder, its name
            return web_demo.run(photo["path"], threshold, blocks, report=lambda f, what: progress(f, desc=what))
        except ValueError as e:
            logger.warning(str(e))
            raise gr.Error(str(e), print_exception=False) from None

    return run


def build_page(web_demo: WebDemo, examples: Sequence[str], title: str) -> gr.Blocks:
    """The page: a gradio ``Blocks`` app around ``web_demo``, headed "GCNet: <title>"."""
    heading = f"GCNet: {title}"
    with gr.Blocks(title=heading, analytics_enabled=False) as page:
        gr.Markdown(f"## {heading}\nUpload a photo or click an example.", elem_id="heading")
        with gr.Row():
            photo = gr.Image(label="Photo", type="filepath", sources=["upload", "clipboard"], elem_id="photo")
            result = gr.Image(
                label="Predictions", interactive=False, buttons=["download", "fullscreen"], elem_id="result"
            )
        with gr.Row():
            threshold = gr.Slider(
                0.0,
                1.0,
                value=0.5,
                step=0.05,
                label="Confidence threshold",
                visible=web_demo.detects_instances,
                elem_id="threshold",
            )
            blocks = gr.CheckboxGroup(
                list(web_demo.blocks), value=web_demo.default_blocks, label="GC blocks to show", elem_id="blocks"
            )
        summary = gr.Markdown(elem_id="summary")
        gr.Markdown(
            "### Attention maps\nIn the order of the network. Red: most attended; the colour bar gives the "
            "attention weights. Entropy 1 = uniform (average pooling), 0 = one position."
        )
        # No label: gradio draws it over the first picture's corner, where its block's name is.
        gallery = gr.Gallery(
            show_label=False,
            columns=3,
            height="fit-content",  # "auto" is gradio's fixed height, which scrolls
            object_fit="contain",
            buttons=["download", "fullscreen"],
            elem_id="attention",
        )
        if examples:
            gr.Examples([[path] for path in examples], inputs=[photo], label="Examples", cache_examples=False)
        # preprocess=False: the photo comes as gradio's record of the upload (still checked to
        # be in the upload folder), read by WebDemo.read, whose messages say what is wrong.
        gr.on(
            [photo.change, threshold.release, blocks.change],
            _page_function(web_demo),
            inputs=[photo, threshold, blocks],
            outputs=[result, gallery, summary],
            preprocess=False,
            concurrency_limit=1,
            trigger_mode="always_last",
        )
    return page


def default_examples(metadata, limit: int) -> List[str]:
    """The first ``limit`` images of a test dataset's image folder, when it is on disk."""
    folder = metadata.get("image_root", None) or metadata.get("image_dir", None)
    if not folder or not os.path.isdir(folder):
        return []
    try:
        return [path for path, _ in list_images([folder])[:limit]]
    except ValueError:  # a folder without images
        return []


def list_examples(paths: Sequence[str], limit: int) -> List[str]:
    """The first ``limit`` images that ``--examples`` names (files, folders, globs)."""
    try:
        return [path for path, _ in list_images(paths)][:limit]
    except ValueError as e:
        raise ValueError(str(e).replace("--input ", "--examples ", 1)) from None


def check_port(host: str, port: int) -> None:
    """Refuse, before the model is built, an address the server could not listen on."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise ValueError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); choose another --port"
        ) from None


def prepare_web_demo(
    *,
    model: Optional[str] = None,
    config_file: Optional[str] = None,
    opts: Sequence[str] = (),
    examples: Optional[Sequence[str]] = None,
    num_examples: int,
    host: str,
    port: int,
    max_pixels: float,
    device: Optional[str] = None,
    inference_overrides: Optional[Mapping[str, object]] = None,
) -> Tuple[WebDemo, List[str], str]:
    """The :class:`WebDemo` of zoo model ``model`` or of ``config_file`` (with ``opts``), its
    first ``num_examples`` examples (``examples``: files, folders, globs; default: the test
    dataset's images, when on disk) and its title (:func:`~gcnet.apps.model_title`): what
    :func:`serve` takes. The address ``host``:``port``, the config and the examples are checked
    before the model is built, which takes a while (and may download its weights).
    ``inference_overrides`` override keys of the config's ``train.inference`` (None values are
    not given).

    Raises:
        ValueError, OSError: one line for any of them (a download that cannot be made is an
            OSError).
    """
    check_port(host, port)
    cfg = model_config(model, config_file, opts)
    inference = InferenceOptions.from_config(cfg, **(inference_overrides or {}))
    chosen = list_examples(examples, num_examples) if examples else None
    start = time.perf_counter()
    predictor = Predictor(cfg, device=device, inference=inference)
    logger.info(f"Built the model on {predictor.device} in {time.perf_counter() - start:.1f} s")
    if chosen is None:
        chosen = default_examples(predictor.metadata, num_examples)
    return WebDemo(predictor, max_pixels), chosen, model_title(model, config_file)


@contextlib.contextmanager
def _own_gradio_folders() -> Iterator[str]:
    """A private folder (mode 0700) for gradio's uploads and cache while the block runs, set
    through gradio's environment variables and removed afterwards, with the variables. It is
    made in the folder that GRADIO_TEMP_DIR names, if it does, else in the system's temporary
    folder."""
    saved = {name: os.environ.get(name) for name in GRADIO_FOLDERS + GRADIO_IGNORED}
    parent = saved["GRADIO_TEMP_DIR"]
    if parent:
        os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gcnet-web-demo-", dir=parent or None) as folder:
        folder = os.path.realpath(folder)
        try:
            for name in GRADIO_IGNORED:
                if os.environ.pop(name, None):
                    logger.warning(f"{name} is ignored: the web demo serves its examples and each visitor's files only")
            for name in GRADIO_FOLDERS:
                os.environ[name] = os.path.join(folder, name.lower())
            yield os.environ["GRADIO_TEMP_DIR"]
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _stop_on_sigterm(*_) -> None:
    raise SystemExit(128 + signal.SIGTERM)


def serve(web_demo: WebDemo, examples: Sequence[str], title: str, host: str, port: int, max_upload_mb: float) -> None:
    """Serve the page of ``web_demo`` on ``host``:``port`` until interrupted (Ctrl-C, or SIGTERM
    when called from the main thread), one request at a time, the latest waiting; uploads over
    ``max_upload_mb`` are refused. What it serves, and from where, is in the module docstring."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm) if on_main_thread else None  # so that cleanup runs
    try:
        with _own_gradio_folders() as uploads:
            page = build_page(web_demo, examples, title)
            examples_copied = [os.path.join(root, f) for root, _, files in os.walk(uploads) for f in files]
            try:
                page.queue().launch(
                    server_name=host,
                    server_port=port,
                    max_file_size=int(max_upload_mb * 1024 * 1024),
                    app_kwargs={"middleware": [Middleware(SessionFiles, folder=uploads, public=examples_copied)]},
                    theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONOSPACE_FONTS),
                    footer_links=[],
                    prevent_thread_lock=True,
                    share=False,
                    ssr_mode=False,
                    num_workers=0,
                    run_history=False,
                    enable_monitoring=False,
                    mcp_server=False,
                    pwa=False,
                    quiet=True,  # its hints (a public link with share=True) are not this tool's
                )
                print(f"Serving the web demo on http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
                page.block_thread()
            finally:
                page.close()
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
