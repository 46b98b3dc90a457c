"""tools/demo.py: one drawn output per input at the input's size, GC heatmaps, videos, unusual
and broken images, and clear errors before any work starts."""
import logging
import types

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Instances

from gcnet.engine import GCNetCheckpointer

from ..helpers import TINY_CONFIG, load_tool, run_tool



@pytest.fixture(scope="module")
def demo():
    return load_tool("demo")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Fixed weights for the tiny model, so that every run draws the same instances."""
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY_CONFIG).model)
    folder = tmp_path_factory.mktemp("weights")
    GCNetCheckpointer(model, save_dir=str(folder)).save("tiny")
    return ["--opts", f"train.init_checkpoint={folder / 'tiny.pth'}"]


def image_size(path):
    with Image.open(path) as im:
        return im.size


def test_every_real_photo_gets_an_output_of_its_size(shared_data, tmp_path, weights):
    photos = [shared_data / "demo" / "park_bench.jpg"] + sorted((shared_data / "tiny_coco" / "val2017").glob("*.jpg"))
    out = tmp_path / "out"
    result = run_tool(
        "tools/demo.py", "--config-file", TINY_CONFIG, "--input", shared_data / "demo", shared_data / "tiny_coco" / "val2017",
        "--output", out, "--confidence-threshold", "0.9", *weights,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "51/51" in result.stderr  # the progress bar
    said = [line for line in result.stdout.splitlines() if " instance drawn" in line or " instances drawn" in line]
    assert len(said) == 51, result.stdout[-3000:]  # one line per image: what was drawn, or why nothing
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in photos)
    for photo in photos:
        assert image_size(out / photo.name) == image_size(photo), photo.name


def test_show_context_writes_a_heatmap_per_stage(demo, shared_data, tmp_path, weights):
    out = tmp_path / "out"
    code = demo.main([
        "--config-file", TINY_CONFIG, "--input", str(shared_data / "demo" / "park_bench.jpg"), "--output", str(out) + "/",
        "--show-context", *weights,
    ])  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["park_bench.jpg", "park_bench_gc_res3.1.jpg", "park_bench_gc_res4.1.jpg", "park_bench_gc_res5.1.jpg"]
    for name in names:
        assert image_size(out / name) == (640, 427)
    drawn, heatmap = cv2.imread(str(out / names[0])), cv2.imread(str(out / names[1]))
    assert np.abs(drawn.astype(int) - heatmap.astype(int)).mean() > 10

    code = demo.main([
        "--config-file", TINY_CONFIG, "--input", str(shared_data / "demo" / "park_bench.jpg"), "--output", str(out / "one.png"),
        "--show-context", "--context-blocks", "*res4.*", *weights,
    ])  # fmt: skip
    assert code == 0
    assert {"one.png", "one_gc_res4.0.png", "one_gc_res4.1.png"} <= {p.name for p in out.iterdir()}


@pytest.fixture
def demo_warnings():
    """The warnings the demo logs (its logger does not propagate to pytest's handler)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("gcnet.demo")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_unusual_and_broken_images(demo, shared_data, tmp_path, demo_warnings, weights):
    photo = Image.open(shared_data / "demo" / "park_bench.jpg").resize((160, 107))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    photo.convert("L").save(inputs / "gray.png")
    photo.convert("RGBA").save(inputs / "rgba.png")
    photo.convert("P").save(inputs / "palette.gif")
    Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257)).save(inputs / "depth16.png")
    (inputs / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (inputs / "truncated.jpg").write_bytes((shared_data / "demo" / "park_bench.jpg").read_bytes()[:3000])
    out = tmp_path / "out"
    assert demo.main(["--config-file", TINY_CONFIG, "--input", str(inputs), "--output", str(out), *weights]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["depth16.png", "gray.png", "palette.png", "rgba.png"]
    for name in ["gray.png", "rgba.png", "palette.png", "depth16.png"]:
        assert image_size(out / name) == (160, 107)
    warnings = demo_warnings
    assert len(warnings) == 3
    assert warnings[0].startswith(f"Skipped {inputs / 'corrupt.jpg'}: not a readable image")
    assert warnings[1].startswith(f"Skipped {inputs / 'truncated.jpg'}: not a readable image")
    assert warnings[2] == "2 of 6 inputs could not be read and were skipped"


def test_video_gets_a_video_of_the_same_frames(demo, shared_data, tmp_path, weights):
    frame = cv2.resize(cv2.imread(str(shared_data / "demo" / "park_bench.jpg")), (128, 96))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (128, 96))
    for shift in range(4):
        writer.write(np.roll(frame, 8 * shift, axis=1))
    writer.release()
    out = tmp_path / "out"
    out.mkdir()
    assert demo.main(["--config-file", TINY_CONFIG, "--video-input", str(video), "--output", str(out), *weights]) == 0
    assert [p.name for p in out.iterdir()] == ["clip.mp4"]
    result = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(result.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert (int(result.get(cv2.CAP_PROP_FRAME_WIDTH)), int(result.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (128, 96)
    result.release()


@pytest.mark.parametrize("args,message", [
    (["--config-file", TINY_CONFIG, "--input", "{tmp}/missing.jpg"], "--input {tmp}/missing.jpg: no such file or folder"),
    (["--config-file", "{tmp}/missing.py", "--input", "{photo}"], "{tmp}/missing.py: no such config file"),
    (["--model", "mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x", "--input", "{photo}"],
     "Unknown model 'mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x'; closest: mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco"),
    (["--config-file", TINY_CONFIG, "--input", "{photo}", "--output", "{tmp}/file.txt/out"], "--output {tmp}/file.txt/out: cannot create the folder"),
    (["--config-file", TINY_CONFIG, "--input", "{photo}", "{tmp}/a", "--output", "{tmp}/out.png"], "--output {tmp}/out.png: 2 inputs need an output folder, not a file"),
    (["--config-file", TINY_CONFIG, "--input", "{photo}", "{tmp}/a/park_bench.jpg", "--output", "{tmp}/out"], "would both be written to {tmp}/out/park_bench.jpg"),
    (["--config-file", TINY_CONFIG, "--video-input", "{tmp}/missing.mp4", "--output", "{tmp}/out.mp4"], "--video-input {tmp}/missing.mp4: no such file"),
    (["--config-file", TINY_CONFIG, "--video-input", "{tmp}/file.txt", "--output", "{tmp}/out.mp4"], "--video-input {tmp}/file.txt: OpenCV cannot read it as a video"),
    (["--config-file", TINY_CONFIG, "--video-input", "{photo}", "--show-context"], "--show-context draws heatmaps on images: use it with --input"),
    (["--config-file", TINY_CONFIG, "--input", "{photo}", "--opts", "model.no_such_key=1"], "model.no_such_key"),
    (["--config-file", TINY_CONFIG, "--input", "{tmp}/a", "--output", "{tmp}/a"], "--output {tmp}/a/park_bench.jpg is inside {tmp}/a, a folder --input reads"),
    (["--config-file", TINY_CONFIG, "--input", "{tmp}/a", "--output", "{tmp}/a/out"], "--output {tmp}/a/out/park_bench.jpg is inside {tmp}/a"),
    (["--config-file", TINY_CONFIG, "--input", "{tmp}/a/park_bench.jpg", "--output", "{tmp}/a"], "--output {tmp}/a/park_bench.jpg would replace the input {tmp}/a/park_bench.jpg"),
    (["--config-file", TINY_CONFIG, "--input", "{tmp}/a/*.jpg", "--output", "{tmp}/link/park_bench.jpg"], "--output {tmp}/link/park_bench.jpg would replace the input"),
    (["--config-file", TINY_CONFIG, "--input", "{tmp}/a/park_bench.jpg", "{photo}", "--output", "{tmp}/b"], "would both be written"),
    (["--config-file", TINY_CONFIG, "--video-input", "{tmp}/a/clip.mp4", "--output", "{tmp}/a"], "--output {tmp}/a/clip.mp4 would replace the input {tmp}/a/clip.mp4"),
])  # fmt: skip
def test_bad_arguments_fail_before_any_work(demo, args, message, shared_data, tmp_path, capsys, monkeypatch):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "park_bench.jpg").write_bytes((shared_data / "demo" / "park_bench.jpg").read_bytes())
    (tmp_path / "link").symlink_to(tmp_path / "a")
    writer = cv2.VideoWriter(str(tmp_path / "a" / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    before = (tmp_path / "a" / "park_bench.jpg").read_bytes()
    fill = dict(tmp=tmp_path, photo=shared_data / "demo" / "park_bench.jpg")
    monkeypatch.setattr(demo, "Predictor", lambda *a, **k: pytest.fail("the model was built before the arguments were checked"))
    assert demo.main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("demo: ") and message.format(**fill) in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "a" / "out").exists()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["clip.mp4", "park_bench.jpg"]
    assert (tmp_path / "a" / "park_bench.jpg").read_bytes() == before


def test_exits_non_zero_when_nothing_was_written(demo, tmp_path, capsys, weights):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (inputs / "empty.png").write_bytes(b"")
    assert demo.main(["--config-file", TINY_CONFIG, "--input", str(inputs), "--output", str(tmp_path / "out"), *weights]) == 1
    assert capsys.readouterr().err.endswith("demo: none of the 2 inputs could be read; nothing was written\n")
    assert not list((tmp_path / "out").iterdir())


def test_no_display_is_one_line_before_the_model_is_built(demo, shared_data, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(demo, "Predictor", lambda *a, **k: pytest.fail("the model was built before the display was checked"))
    assert demo.main(["--config-file", TINY_CONFIG, "--input", str(shared_data / "demo" / "park_bench.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("demo: --output is required: without it the drawings are shown in a window, and ")
    assert err.rstrip().endswith(("there is no display (DISPLAY is not set)", "this OpenCV build cannot open windows"))


@pytest.mark.parametrize("scores, said", [
    ([0.9, 0.7, 0.2], "2 instances drawn (score >= 0.5)"),
    ([0.6], "1 instance drawn (score >= 0.5)"),
    ([0.31, 0.2], "no instance drawn: the highest score 0.31 is below --confidence-threshold 0.5"),
    ([], "no instance drawn: the model detected nothing"),
])  # fmt: skip
def test_each_image_says_what_was_drawn(demo, scores, said):
    instances = Instances((4, 4), scores=torch.tensor(scores))
    described = demo.Demo.describe(types.SimpleNamespace(confidence_threshold=0.5), {"instances": instances})
    assert described == said
