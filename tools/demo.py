#!/usr/bin/env python
"""Run a GCNet model on images, a video or a webcam and draw its predictions.

    python tools/demo.py --model mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco \\
        --input photos/ --output out/ [--show-context]
    python tools/demo.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py \\
        --input "photos/*.jpg" --output out/ --opts train.init_checkpoint=output/model_final.pth

Instances (masks, boxes, classes, scores above --confidence-threshold) or the semantic map are
drawn with detectron2's Visualizer; each output has its input's size. --show-context also
writes, for each image, the attention map of chosen GC blocks (softmax_j(W_k x_j), Fig. 5 of
the paper) as a heatmap over the image: <name>_gc_<block><ext>.
"""
import argparse
import contextlib
import logging
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

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
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the config's train.device, cuda if available)")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser


if __name__ == "__main__":
    get_parser().parse_args()  # --help and bad options are answered before the slow imports below
    filter_known_warnings()

import cv2
import numpy as np
import tqdm

from detectron2.utils.logger import setup_logger
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

import gcnet.model_zoo
from gcnet.analysis import default_context_blocks, draw_attention_map, find_context_blocks, predict_with_attention, short_block_name
from gcnet.data import list_images, read_image, write_image
from gcnet.engine import Predictor, apply_overrides, load_config
from gcnet.utils.file_io import atomic_path

logger = logging.getLogger("gcnet.demo")

WRITABLE_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSION, VIDEO_CODEC = ".mp4", "mp4v"


def demo_config(args):
    """The config of --model (with its zoo weights) or --config-file, with --opts."""
    if args.model:
        return apply_overrides(gcnet.model_zoo.get_config(args.model, trained=True), args.opts)
    return load_config(args.config_file, args.opts)


def window_problem() -> Optional[str]:
    """Why a window cannot be shown here (None if it can): an OpenCV build without a GUI, or
    on Linux no display to open it on (OpenCV's Qt would abort the process)."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if not match or match.group(1).upper() == "NONE":
        return "this OpenCV build cannot open windows"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no display (DISPLAY is not set)"
    return None


def _check_writable_folder(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--output {folder}: cannot create the folder ({e.strerror})") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--output {folder}: the folder is not writable")


def plan_image_outputs(inputs: List[Tuple[str, str]], output: str, input_specs: List[str] = ()) -> List[Tuple[str, str]]:
    """(input path, output path) for every image; checks the output before any work starts
    (:func:`refuse_outputs_over_inputs` with the ``--input`` arguments ``input_specs``).

    An ``output`` with an image extension is the file of a single input; anything else is a
    folder, where each output keeps its input's name (and its path below an input folder).
    """
    if os.path.splitext(output)[1].lower() in WRITABLE_IMAGE_EXTENSIONS and not os.path.isdir(output):
        if len(inputs) > 1:
            raise ValueError(f"--output {output}: {len(inputs)} inputs need an output folder, not a file")
        refuse_outputs_over_inputs([(inputs[0][0], output)], input_specs)
        _check_writable_folder(os.path.dirname(os.path.abspath(output)))
        return [(inputs[0][0], output)]
    planned, used = [], {}
    for path, name in inputs:
        stem, ext = os.path.splitext(name)
        target = os.path.join(output, stem + (ext if ext.lower() in WRITABLE_IMAGE_EXTENSIONS else ".png"))
        if target in used:
            raise ValueError(f"--input {used[target]} and {path} would both be written to {target}; give them separate runs")
        used[target] = path
        planned.append((path, target))
    refuse_outputs_over_inputs(planned, input_specs)
    _check_writable_folder(output)
    return planned


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def refuse_outputs_over_inputs(planned: List[Tuple[str, str]], input_specs: List[str]) -> None:
    """No output replaces an input: an output file that is one of the inputs, or whose
    heatmaps (``<stem>_gc_<block><ext>``) could be, and an output inside a folder the demo walks
    for inputs, are refused before any work starts."""
    inputs = {os.path.realpath(path) for path, _ in planned}
    folders = [os.path.realpath(os.path.expanduser(s)) for s in input_specs if os.path.isdir(os.path.expanduser(s))]
    for path, target in planned:
        real_target = os.path.realpath(target)
        stem, ext = os.path.splitext(real_target)
        folder = next((f for f in folders if _inside(real_target, f)), None)
        if folder is not None:
            raise ValueError(
                f"--output {target} is inside {folder}, a folder --input reads: the drawings would mix with "
                "(or replace) the photos; choose an output folder outside it"
            )
        if real_target in inputs or any(i.startswith(stem + "_gc_") and i.endswith(ext) for i in inputs):
            raise ValueError(f"--output {target} would replace the input {path if real_target in inputs else real_target}")


def plan_video_output(video_input: Optional[str], output: Optional[str]) -> Optional[str]:
    """The output video file (None to show the frames); checks it before any work starts."""
    if video_input:
        if not os.path.isfile(video_input):
            raise ValueError(f"--video-input {video_input}: no such file")
        video = cv2.VideoCapture(video_input)
        readable = video.isOpened()
        video.release()
        if not readable:
            raise ValueError(f"--video-input {video_input}: OpenCV cannot read it as a video")
    if not output:
        return None
    if os.path.splitext(output)[1].lower() == VIDEO_EXTENSION and not os.path.isdir(output):
        target = output
    else:
        name = os.path.splitext(os.path.basename(video_input))[0] if video_input else "webcam"
        target = os.path.join(output, name + VIDEO_EXTENSION)
    if video_input and os.path.realpath(target) == os.path.realpath(video_input):
        raise ValueError(f"--output {target} would replace the input {video_input}")
    _check_writable_folder(os.path.dirname(os.path.abspath(target)))
    return target


class Demo:
    """Predictions of a :class:`Predictor` drawn over the input."""

    def __init__(self, predictor: Predictor, confidence_threshold: float, context_blocks: Optional[List[str]]):
        self.predictor = predictor
        self.confidence_threshold = confidence_threshold
        self.context_blocks = context_blocks
        self.video_visualizer = VideoVisualizer(predictor.metadata, ColorMode.IMAGE)

    def _instances(self, predictions: Dict):
        instances = predictions["instances"].to("cpu")
        return instances[instances.scores >= self.confidence_threshold]

    def draw(self, image_bgr: np.ndarray, predictions: Dict) -> np.ndarray:
        """The predictions drawn over the image (RGB, the image's size)."""
        visualizer = Visualizer(image_bgr[:, :, ::-1], self.predictor.metadata, instance_mode=ColorMode.IMAGE)
        if "instances" in predictions:
            vis = visualizer.draw_instance_predictions(self._instances(predictions))
        else:
            vis = visualizer.draw_sem_seg(predictions["sem_seg"].argmax(dim=0).cpu())
        return vis.get_image()

    def draw_frame(self, frame_bgr: np.ndarray, predictions: Dict) -> np.ndarray:
        """A video frame's predictions, with colours kept across frames (BGR)."""
        if "instances" in predictions:
            vis = self.video_visualizer.draw_instance_predictions(frame_bgr[:, :, ::-1], self._instances(predictions))
        else:
            vis = self.video_visualizer.draw_sem_seg(frame_bgr[:, :, ::-1], predictions["sem_seg"].argmax(dim=0).cpu())
        return vis.get_image()[:, :, ::-1]

    def describe(self, predictions: Dict) -> str:
        """What :meth:`draw` draws, in words; when it draws no instance, why."""
        if "instances" not in predictions:
            return f"{len(predictions['sem_seg'].argmax(dim=0).unique())} classes drawn"
        scores, threshold = predictions["instances"].scores, self.confidence_threshold
        drawn = int((scores >= threshold).sum())
        if drawn:
            return f"{drawn} instance{'s' if drawn > 1 else ''} drawn (score >= {threshold:g})"
        if not len(scores):
            return "no instance drawn: the model detected nothing"
        return f"no instance drawn: the highest score {scores.max().item():.2f} is below --confidence-threshold {threshold:g}"

    def run_on_image(self, image_bgr: np.ndarray) -> Tuple[np.ndarray, Dict[str, np.ndarray], str]:
        """The drawn predictions, with context blocks each block's heatmap (RGB images), and
        what was drawn in words."""
        if not self.context_blocks:
            predictions, heatmaps = self.predictor(image_bgr), {}
        else:
            predictions, maps = predict_with_attention(self.predictor, image_bgr, self.context_blocks)
            image_rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
            heatmaps = {name: draw_attention_map(image_rgb, weights, short_block_name(name)) for name, weights in maps.items()}
        return self.draw(image_bgr, predictions), heatmaps, self.describe(predictions)


def run_images(demo: Demo, planned: List[Tuple[str, Optional[str]]]) -> int:
    """Draw every image; write it to its target, or show it in a window when the target is None.
    Returns 1 when no input could be read (nothing was drawn), else 0."""
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


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    setup_logger(name="gcnet")
    setup_logger(name="fvcore")
    try:
        if args.show_context and not args.input:
            raise ValueError("--show-context draws heatmaps on images: use it with --input")
        cfg = demo_config(args)
        # Check the inputs, the output and the window before building the model.
        if args.input:
            images = list_images(args.input)
            planned = plan_image_outputs(images, args.output, args.input) if args.output else [(p, None) for p, _ in images]
        else:
            video_target = plan_video_output(args.video_input, args.output)
        problem = None if args.output else window_problem()
        if problem:
            raise ValueError(f"--output is required: without it the drawings are shown in a window, and {problem}")
        predictor = Predictor(cfg, device=args.device, score_threshold=args.confidence_threshold)
        context_blocks = None
        if args.show_context:
            model = predictor.model
            context_blocks = find_context_blocks(model, args.context_blocks) if args.context_blocks else default_context_blocks(model)
            if not context_blocks:
                raise ValueError("--show-context: the model has no GC block")
        demo = Demo(predictor, args.confidence_threshold, context_blocks)
        if args.input:
            return run_images(demo, planned)
        return run_video(demo, args.video_input, video_target)
    except (ValueError, OSError) as e:  # bad input, a missing file, a download that cannot be made
        print(f"demo: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
