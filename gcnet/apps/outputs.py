"""Where the demo and the exporter write, checked before any work starts: a folder that can be
written, and demo outputs that never replace an input.

Errors name the options of ``tools/demo.py`` and ``tools/export_model.py`` (``--output``,
``--input``, ``--video-input``) whose values they are about.
"""

import os
import tempfile
from typing import List, Optional, Sequence, Tuple

import cv2

__all__ = [
    "WRITABLE_IMAGE_EXTENSIONS",
    "VIDEO_EXTENSION",
    "check_writable_folder",
    "plan_image_outputs",
    "refuse_outputs_over_inputs",
    "plan_video_output",
]

WRITABLE_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSION = ".mp4"


def check_writable_folder(folder: str, option: str = "--output") -> None:
    """Create ``folder`` if needed and make sure a file can be written in it, by writing (and
    removing) one: permission bits alone do not say it for root, read-only file systems, or
    full quotas.

    Raises:
        ValueError: ``"<option> <folder>: cannot create the folder (...)"`` or ``"...: the folder
            is not writable (...)"``, with the system's reason.
    """
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{option} {folder}: cannot create the folder ({e.strerror or e})") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"{option} {folder}: the folder is not writable ({e.strerror or e}); choose another") from None


def plan_image_outputs(
    inputs: List[Tuple[str, str]], output: str, input_specs: Sequence[str] = ()
) -> List[Tuple[str, str]]:
    """(input path, output path) for every image; checks the output before any work starts
    (:func:`refuse_outputs_over_inputs` with the ``--input`` arguments ``input_specs``).

    An ``output`` with an image extension is the file of a single input; anything else is a
    folder, where each output keeps its input's name (and its path below an input folder).
    """
    if os.path.splitext(output)[1].lower() in WRITABLE_IMAGE_EXTENSIONS and not os.path.isdir(output):
        if len(inputs) > 1:
            raise ValueError(f"--output {output}: {len(inputs)} inputs need an output folder, not a file")
        refuse_outputs_over_inputs([(inputs[0][0], output)], input_specs)
        check_writable_folder(os.path.dirname(os.path.abspath(output)))
        return [(inputs[0][0], output)]
    planned, used = [], {}
    for path, name in inputs:
        stem, ext = os.path.splitext(name)
        target = os.path.join(output, stem + (ext if ext.lower() in WRITABLE_IMAGE_EXTENSIONS else ".png"))
        if target in used:
            raise ValueError(
                f"--input {used[target]} and {path} would both be written to {target}; give them separate runs"
            )
        used[target] = path
        planned.append((path, target))
    refuse_outputs_over_inputs(planned, input_specs)
    check_writable_folder(output)
    return planned


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def refuse_outputs_over_inputs(planned: List[Tuple[str, str]], input_specs: Sequence[str]) -> None:
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
            replaced = path if real_target in inputs else real_target
            raise ValueError(f"--output {target} would replace the input {replaced}")


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
    check_writable_folder(os.path.dirname(os.path.abspath(target)))
    return target
