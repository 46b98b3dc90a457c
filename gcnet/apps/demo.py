"""The demo: a model's predictions drawn over images, a video or a webcam with detectron2's
``Visualizer``, and, for images, the attention maps of chosen GC blocks (softmax_j(W_k x_j),
Fig. 5 of the paper) as heatmaps. ``tools/demo.py`` is its command line::

    cfg = model_config(model="mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco")
    run_demo(cfg, confidence_threshold=0.5, inputs=["photos/"], output="out/", show_context=True)

An image is drawn at its own size up to :data:`MAX_DRAWN_PIXELS`; a larger one on a canvas
scaled down to that many pixels, with the predictions made at the canvas's size. detectron2's
``Visualizer`` takes about 70 bytes a pixel of the canvas, and 2 more per drawn instance (its
mask, pasted, and a copy): an 8000x8000 photo drawn at its size could take 15 GB.
"""

import contextlib
import logging
import math
import os
import re
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
import tqdm

from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

from gcnet.analysis import (
    default_context_blocks,
    draw_attention_map,
    find_context_blocks,
    predict_with_attention,
    short_block_name,
)
from gcnet.data import list_images, read_image, write_image
from gcnet.engine import InferenceOptions, Predictor
from gcnet.utils.file_io import atomic_path

from .outputs import plan_image_outputs, plan_video_output

__all__ = [
    "MAX_DRAWN_PIXELS",
    "drawing_size",
    "describe_predictions",
    "Demo",
    "window_problem",
    "run_images",
    "run_video",
    "run_demo",
]

logger = logging.getLogger("gcnet.demo")

# 3072 x 3072: the drawing takes at most about 3 GB, 100 instances included.
MAX_DRAWN_PIXELS = 3072 * 3072
VIDEO_CODEC = "mp4v"


def drawing_size(height: int, width: int, max_pixels: float = MAX_DRAWN_PIXELS) -> Tuple[int, int]:
    """The (height, width) an image is drawn at: its own, or scaled down (same aspect ratio)
    to at most ``max_pixels`` pixels."""
    if height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    return max(1, int(height * scale)), max(1, int(width * scale))


def describe_predictions(predictions: Dict, confidence_threshold: float) -> str:
    """What :meth:`Demo.draw` draws, in words; when it draws no instance, why."""
    if "instances" not in predictions:
        return f"{len(predictions['sem_seg'].argmax(dim=0).unique())} classes drawn"
    scores, threshold = predictions["instances"].scores, confidence_threshold
    drawn = int((scores >= threshold).sum())
    if drawn:
        return f"{drawn} instance{'s' if drawn > 1 else ''} drawn (score >= {threshold:g})"
    highest = predictions.get("highest_score", scores.max().item() if len(scores) else None)
    if highest is None:
        return "no instance drawn: the model detected nothing"
    return f"no instance drawn: the highest score {highest:.2f} is below --confidence-threshold {threshold:g}"


class Demo:
    """Predictions of a :class:`~gcnet.engine.Predictor` drawn over the input.

    Args:
        predictor: the model.
        confidence_threshold: the lowest score of a drawn instance.
        context_blocks: full names of the GC blocks whose attention maps :meth:`run_on_image`
            draws (None: none).
        max_drawn_pixels: larger images are drawn on a canvas scaled down to this many pixels.
    """

    def __init__(
        self,
        predictor: Predictor,
        confidence_threshold: float,
        context_blocks: Optional[Sequence[str]] = None,
        max_drawn_pixels: float = MAX_DRAWN_PIXELS,
    ):
        self.predictor = predictor
        self.confidence_threshold = confidence_threshold
        self.context_blocks = list(context_blocks or [])
        self.max_drawn_pixels = max_drawn_pixels
        self.video_visualizer = VideoVisualizer(predictor.metadata, ColorMode.IMAGE)

    def _instances(self, predictions: Dict):
        instances = predictions["instances"].to("cpu")
        return instances[instances.scores >= self.confidence_threshold]

    def predict(self, image_bgr: np.ndarray, blocks: Sequence[str] = ()) -> Tuple[Dict, Dict, np.ndarray]:
        """The predictions for one BGR image and the attention maps of ``blocks`` (full names),
        at the size the image is drawn at (:func:`drawing_size`), and the image at that size:
        the canvas of :meth:`draw` and :meth:`draw_attention`."""
        height, width = image_bgr.shape[:2]
        size = drawing_size(height, width, self.max_drawn_pixels)
        if blocks:
            predictions, maps = predict_with_attention(self.predictor, image_bgr, list(blocks), output_size=size)
        else:
            predictions, maps = self.predictor(image_bgr, output_size=size), {}
        if size != (height, width):
            image_bgr = cv2.resize(image_bgr, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return predictions, maps, image_bgr

    def draw(self, canvas_bgr: np.ndarray, predictions: Dict) -> np.ndarray:
        """The predictions drawn over the image they were made at the size of (RGB)."""
        visualizer = Visualizer(canvas_bgr[:, :, ::-1], self.predictor.metadata, instance_mode=ColorMode.IMAGE)
        if "instances" in predictions:
            vis = visualizer.draw_instance_predictions(self._instances(predictions))
        else:
            vis = visualizer.draw_sem_seg(predictions["sem_seg"].argmax(dim=0).cpu())
        return vis.get_image()

    @staticmethod
    def draw_attention(canvas_bgr: np.ndarray, maps: Dict) -> Dict[str, np.ndarray]:
        """Each block's attention map drawn over the canvas (RGB), titled with its short name."""
        canvas_rgb = np.ascontiguousarray(canvas_bgr[:, :, ::-1])
        return {name: draw_attention_map(canvas_rgb, weights, short_block_name(name)) for name, weights in maps.items()}

    def draw_frame(self, frame_bgr: np.ndarray, predictions: Dict) -> np.ndarray:
        """A video frame's predictions, with colours kept across frames (BGR)."""
        frame_rgb = frame_bgr[:, :, ::-1]
        if "instances" in predictions:
            vis = self.video_visualizer.draw_instance_predictions(frame_rgb, self._instances(predictions))
        else:
            vis = self.video_visualizer.draw_sem_seg(frame_rgb, predictions["sem_seg"].argmax(dim=0).cpu())
        return vis.get_image()[:, :, ::-1]

    def run_on_image(self, image_bgr: np.ndarray) -> Tuple[np.ndarray, Dict[str, np.ndarray], str]:
        """The drawn predictions, each context block's heatmap (RGB images, at
        :func:`drawing_size`), and what was drawn in words."""
        predictions, maps, canvas = self.predict(image_bgr, self.context_blocks)
        description = describe_predictions(predictions, self.confidence_threshold)
        if canvas.shape != image_bgr.shape:
            (height, width), (h, w) = image_bgr.shape[:2], canvas.shape[:2]
            description += (
                f"; drawn at {w}x{h}, scaled down from {width}x{height} "
                f"(images over {self.max_drawn_pixels / 1e6:.1f} megapixels are)"
            )
        return self.draw(canvas, predictions), self.draw_attention(canvas, maps), description


def window_problem() -> Optional[str]:
    """Why a window cannot be shown here (None if it can): an OpenCV build without a GUI, or
    on Linux no display to open it on (OpenCV's Qt would abort the process)."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if not match or match.group(1).upper() == "NONE":
        return "this OpenCV build cannot open windows"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no display (DISPLAY is not set)"
    return None


def run_images(demo: Demo, planned: List[Tuple[str, Optional[str]]]) -> int:
    """Draw every image; write it (and its heatmaps, ``<stem>_gc_<block><ext>``) to its target,
    or show it in a window when the target is None. Returns 1 when no input could be read
    (nothing was drawn), else 0."""
    skipped = 0
    for path, target in tqdm.tqdm(planned, desc="demo", unit="image", disable=len(planned) < 2):
        try:
            image = read_image(path, format="BGR")
        except ValueError as e:
            logger.warning(f"Skipped {e}")
            skipped += 1
            continue
        drawn, heatmaps, description = demo.run_on_image(image)
        logger.info(f"{path}: {description}")
        if target:
            write_image(target, drawn)
            stem, ext = os.path.splitext(target)
            for name, heatmap in heatmaps.items():
                write_image(f"{stem}_gc_{short_block_name(name)}{ext}", heatmap)
        else:
            for title, picture in [(path, drawn)] + [(f"{path} {n}", h) for n, h in heatmaps.items()]:
                cv2.imshow(title, picture[:, :, ::-1])
            if cv2.waitKey(0) == 27:  # Esc
                break
    if skipped == len(planned):
        print(f"demo: none of the {skipped} inputs could be read; nothing was written", file=sys.stderr)
        return 1
    if skipped:
        logger.warning(f"{skipped} of {len(planned)} inputs could not be read and were skipped")
    return 0


def run_video(demo: Demo, video_input: Optional[str], target: Optional[str]) -> int:
    """Draw every frame of a video file (or the webcam when ``video_input`` is None); write
    them to ``target``, or show them when it is None."""
    video = cv2.VideoCapture(video_input if video_input else 0)
    if not video.isOpened():
        raise ValueError(f"{video_input or 'webcam'}: cannot be opened as a video")
    width, height = int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = video.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) if video_input else None
    with contextlib.ExitStack() as stack:
        writer = None
        if target:
            partial = stack.enter_context(atomic_path(target))
            writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*VIDEO_CODEC), fps, (width, height))
            stack.callback(writer.release)  # runs before atomic_path renames or removes the file
        stack.callback(video.release)
        with tqdm.tqdm(total=total, desc="demo", unit="frame") as progress:
            while True:
                ok, frame = video.read()
                if not ok:
                    break
                drawn = demo.draw_frame(frame, demo.predictor(frame))
                if writer is not None:
                    writer.write(drawn)
                else:
                    cv2.imshow(video_input or "webcam", drawn)
                    if cv2.waitKey(1) == 27:
                        break
                progress.update()
    if target:
        logger.info(f"Wrote {target}")
    return 0


def run_demo(
    cfg,
    *,
    confidence_threshold: float,
    inputs: Optional[Sequence[str]] = None,
    video_input: Optional[str] = None,
    output: Optional[str] = None,
    show_context: bool = False,
    context_blocks: Optional[Sequence[str]] = None,
    device: Optional[str] = None,
    inference_overrides: Optional[Mapping[str, object]] = None,
) -> int:
    """What ``tools/demo.py`` does: draw the predictions of the model of ``cfg`` on the images
    that ``inputs`` name (files, folders, globs), or on the frames of ``video_input``, or of the
    webcam when neither is given; write them under ``output`` (a folder, an image file for a
    single image, a .mp4 for a video), or show them in a window.

    Args:
        confidence_threshold: the lowest score of a drawn instance.
        show_context: also draw the attention maps of GC blocks (images only): those whose
            names match the globs ``context_blocks``, by default the last of each stage.
        inference_overrides: keys of the config's ``train.inference`` to override (None
            values are not given; :class:`~gcnet.engine.InferenceOptions`).

    Returns:
        the exit code: 0, or 1 when no input could be read.

    Raises:
        ValueError: bad input, an output that would replace an input or cannot be written, no
            window to show the drawings in; all of them before the model is built.
    """
    inference = InferenceOptions.from_config(cfg, **(inference_overrides or {}))
    if show_context and not inputs:
        raise ValueError("--show-context draws heatmaps on images: use it with --input")
    if inputs:
        images = list_images(inputs)
        planned = plan_image_outputs(images, output, inputs) if output else [(p, None) for p, _ in images]
    else:
        video_target = plan_video_output(video_input, output)
    problem = None if output else window_problem()
    if problem:
        raise ValueError(f"--output is required: without it the drawings are shown in a window, and {problem}")
    predictor = Predictor(cfg, device=device, score_threshold=confidence_threshold, inference=inference)
    blocks = None
    if show_context:
        model = predictor.model
        blocks = find_context_blocks(model, context_blocks) if context_blocks else default_context_blocks(model)
        if not blocks:
            raise ValueError("--show-context: the model has no GC block")
    demo = Demo(predictor, confidence_threshold, blocks)
    if inputs:
        return run_images(demo, planned)
    return run_video(demo, video_input, video_target)
