"""The demo (tools/demo.py, gcnet.apps.run_demo): one drawn output per input at the input's size
(or scaled down when too large to draw), GC heatmaps, videos, unusual and broken images, and
clear errors before any work starts."""

import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Instances

import gcnet.apps.demo
from gcnet.apps import Demo, describe_predictions, model_config, run_demo
from gcnet.data import read_image
from gcnet.engine import GCNetCheckpointer, Predictor, load_config

from ..helpers import TINY_CONFIG, run_tool


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Fixed weights for the tiny model, so that every run draws the same instances."""
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(TINY_CONFIG).model)
    folder = tmp_path_factory.mktemp("weights")
    GCNetCheckpointer(model, save_dir=str(folder)).save("tiny")
    return ["--opts", f"train.init_checkpoint={folder / 'tiny.pth'}"]


@pytest.fixture(scope="module")
def tiny(weights):
    """The tiny model's config with those weights."""
    return model_config(config_file=TINY_CONFIG, opts=weights[1:])


def image_size(path):
    with Image.open(path) as im:
        return im.size


def test_every_real_photo_gets_an_output_of_its_size(shared_data, tmp_path, weights):
    photos = [shared_data / "demo" / "park_bench.jpg"] + sorted((shared_data / "tiny_coco" / "val2017").glob("*.jpg"))
    out = tmp_path / "out"
    result = run_tool(
        "tools/demo.py",
        "--config-file",
        TINY_CONFIG,
        "--input",
        shared_data / "demo",
        shared_data / "tiny_coco" / "val2017",
        "--output",
        out,
        "--confidence-threshold",
        "0.9",
        *weights,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "51/51" in result.stderr  # the progress bar
    said = [line for line in result.stdout.splitlines() if " instance drawn" in line or " instances drawn" in line]
    assert len(said) == 51, result.stdout[-3000:]  # one line per image: what was drawn, or why nothing
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in photos)
    for photo in photos:
        assert image_size(out / photo.name) == image_size(photo), photo.name


def test_show_context_writes_a_heatmap_per_stage(tiny, shared_data, tmp_path):
    out = tmp_path / "out"
    photo = str(shared_data / "demo" / "park_bench.jpg")
    assert run_demo(tiny, confidence_threshold=0.5, inputs=[photo], output=str(out) + "/", show_context=True) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "park_bench.jpg",
        "park_bench_gc_res3.1.jpg",
        "park_bench_gc_res4.1.jpg",
        "park_bench_gc_res5.1.jpg",
    ]
    for name in names:
        assert image_size(out / name) == (640, 427)
    drawn, heatmap = cv2.imread(str(out / names[0])), cv2.imread(str(out / names[1]))
    assert np.abs(drawn.astype(int) - heatmap.astype(int)).mean() > 10

    code = run_demo(
        tiny,
        confidence_threshold=0.5,
        inputs=[photo],
        output=str(out / "one.png"),
        show_context=True,
        context_blocks=["*res4.*"],
    )
    assert code == 0
    assert {"one.png", "one_gc_res4.0.png", "one_gc_res4.1.png"} <= {p.name for p in out.iterdir()}


def test_an_image_too_large_to_draw_is_drawn_scaled_down(tiny, shared_data, demo_messages):
    """Drawn (and its heatmaps) on a canvas of at most max_drawn_pixels, same aspect ratio, the
    predictions made at the canvas's size; the line about the image says so."""
    photo = cv2.resize(cv2.imread(str(shared_data / "demo" / "park_bench.jpg")), (1600, 1068))
    predictor = Predictor(tiny, device="cpu", score_threshold=0.5)
    demo = Demo(predictor, 0.5, ["backbone.bottom_up.res5.1.context_block"], max_drawn_pixels=0.4e6)
    drawn, heatmaps, description = demo.run_on_image(photo)
    assert drawn.shape == (516, 774, 3) and heatmaps["backbone.bottom_up.res5.1.context_block"].shape == (516, 774, 3)
    assert description.endswith("; drawn at 774x516, scaled down from 1600x1068 (images over 0.4 megapixels are)")
    predictions, _, canvas = demo.predict(photo)
    assert canvas.shape == (516, 774, 3) and predictions["instances"].image_size == (516, 774)
    full = predictor(photo)["instances"]  # the same detections, at the photo's size
    torch.testing.assert_close(
        predictions["instances"].pred_boxes.tensor * 1600 / 774, full.pred_boxes.tensor, rtol=0, atol=4.0
    )
    small = Demo(predictor, 0.5, max_drawn_pixels=0.4e6).run_on_image(photo[:400, :600])
    assert small[0].shape == (400, 600, 3) and "scaled" not in small[2]


@pytest.fixture
def demo_messages():
    """The lines the demo logs (its logger does not propagate to pytest's handler)."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("gcnet.demo")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_unusual_and_broken_images(tiny, shared_data, tmp_path, demo_messages):
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
    assert run_demo(tiny, confidence_threshold=0.5, inputs=[str(inputs)], output=str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["depth16.png", "gray.png", "palette.png", "rgba.png"]
    for name in ["gray.png", "rgba.png", "palette.png", "depth16.png"]:
        assert image_size(out / name) == (160, 107)
    warnings = [m for m in demo_messages if "drawn" not in m]  # one line per drawn image, and these
    assert len(warnings) == 3
    assert warnings[0].startswith(f"Skipped {inputs / 'corrupt.jpg'}: not a readable image")
    assert warnings[1].startswith(f"Skipped {inputs / 'truncated.jpg'}: not a readable image")
    assert warnings[2] == "2 of 6 inputs could not be read and were skipped"


def test_video_gets_a_video_of_the_same_frames(tiny, shared_data, tmp_path):
    frame = cv2.resize(cv2.imread(str(shared_data / "demo" / "park_bench.jpg")), (128, 96))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (128, 96))
    for shift in range(4):
        writer.write(np.roll(frame, 8 * shift, axis=1))
    writer.release()
    out = tmp_path / "out"
    out.mkdir()
    assert run_demo(tiny, confidence_threshold=0.5, video_input=str(video), output=str(out)) == 0
    assert [p.name for p in out.iterdir()] == ["clip.mp4"]
    result = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(result.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert (int(result.get(cv2.CAP_PROP_FRAME_WIDTH)), int(result.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (128, 96)
    result.release()


@pytest.mark.parametrize(
    "options,message",
    [
        (
            dict(config_file=TINY_CONFIG, inputs=["{tmp}/missing.jpg"]),
            "--input {tmp}/missing.jpg: no such file or folder",
        ),
        (dict(config_file="{tmp}/missing.py", inputs=["{photo}"]), "{tmp}/missing.py: no such config file"),
        (
            dict(model="mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x", inputs=["{photo}"]),
            "Unknown model 'mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x'; closest: "
            "mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco",
        ),
        (
            dict(config_file=TINY_CONFIG, inputs=["{photo}"], output="{tmp}/file.txt/out"),
            "--output {tmp}/file.txt/out: cannot create the folder",
        ),
        (dict(config_file=TINY_CONFIG, inputs=["{photo}"], output="/sys"), "--output /sys: the folder is not writable"),
        (
            dict(config_file=TINY_CONFIG, inputs=["{photo}", "{tmp}/a"], output="{tmp}/out.png"),
            "--output {tmp}/out.png: 2 inputs need an output folder, not a file",
        ),
        (
            dict(config_file=TINY_CONFIG, inputs=["{photo}", "{tmp}/a/park_bench.jpg"], output="{tmp}/out"),
            "would both be written to {tmp}/out/park_bench.jpg",
        ),
        (
            dict(config_file=TINY_CONFIG, video_input="{tmp}/missing.mp4", output="{tmp}/out.mp4"),
            "--video-input {tmp}/missing.mp4: no such file",
        ),
        (
            dict(config_file=TINY_CONFIG, video_input="{tmp}/file.txt", output="{tmp}/out.mp4"),
            "--video-input {tmp}/file.txt: OpenCV cannot read it as a video",
        ),
        (
            dict(config_file=TINY_CONFIG, video_input="{photo}", show_context=True),
            "--show-context draws heatmaps on images: use it with --input",
        ),
        (dict(config_file=TINY_CONFIG, inputs=["{photo}"], opts=["model.no_such_key=1"]), "model.no_such_key"),
        (
            dict(config_file=TINY_CONFIG, inputs=["{tmp}/a"], output="{tmp}/a"),
            "--output {tmp}/a/park_bench.jpg is inside {tmp}/a, a folder --input reads",
        ),
        (
            dict(config_file=TINY_CONFIG, inputs=["{tmp}/a"], output="{tmp}/a/out"),
            "--output {tmp}/a/out/park_bench.jpg is inside {tmp}/a",
        ),
        (
            dict(config_file=TINY_CONFIG, inputs=["{tmp}/a/park_bench.jpg"], output="{tmp}/a"),
            "--output {tmp}/a/park_bench.jpg would replace the input {tmp}/a/park_bench.jpg",
        ),
        (
            dict(config_file=TINY_CONFIG, inputs=["{tmp}/a/*.jpg"], output="{tmp}/link/park_bench.jpg"),
            "--output {tmp}/link/park_bench.jpg would replace the input",
        ),
        (
            dict(config_file=TINY_CONFIG, inputs=["{tmp}/a/park_bench.jpg", "{photo}"], output="{tmp}/b"),
            "would both be written",
        ),
        (
            dict(config_file=TINY_CONFIG, video_input="{tmp}/a/clip.mp4", output="{tmp}/a"),
            "--output {tmp}/a/clip.mp4 would replace the input {tmp}/a/clip.mp4",
        ),
    ],
)
def test_bad_arguments_fail_before_any_work(options, message, shared_data, tmp_path, monkeypatch):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "park_bench.jpg").write_bytes((shared_data / "demo" / "park_bench.jpg").read_bytes())
    (tmp_path / "link").symlink_to(tmp_path / "a")
    writer = cv2.VideoWriter(str(tmp_path / "a" / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    before = (tmp_path / "a" / "park_bench.jpg").read_bytes()
    fill = dict(tmp=tmp_path, photo=shared_data / "demo" / "park_bench.jpg")
    given = {k: [a.format(**fill) for a in v] if isinstance(v, list) else v for k, v in options.items()}
    given = {k: v.format(**fill) if isinstance(v, str) else v for k, v in given.items()}
    monkeypatch.setattr(
        gcnet.apps.demo,
        "Predictor",
        lambda *a, **k: pytest.fail("the model was built before the arguments were checked"),
    )
    with pytest.raises(ValueError) as error:
        cfg = model_config(given.pop("model", None), given.pop("config_file", None), given.pop("opts", []))
        run_demo(cfg, confidence_threshold=0.5, **given)
    assert message.format(**fill) in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "a" / "out").exists()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["clip.mp4", "park_bench.jpg"]
    assert (tmp_path / "a" / "park_bench.jpg").read_bytes() == before


def test_a_bad_argument_is_one_line_and_exit_2(shared_data, tmp_path):
    photo = shared_data / "demo" / "park_bench.jpg"
    result = run_tool("tools/demo.py", "--config-file", TINY_CONFIG, "--input", photo, "--output", "/sys")
    assert (
        result.returncode == 2
        and result.stderr == "demo: --output /sys: the folder is not writable (Permission denied); choose another\n"
    )


def test_exits_non_zero_when_nothing_was_written(tiny, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (inputs / "empty.png").write_bytes(b"")
    assert run_demo(tiny, confidence_threshold=0.5, inputs=[str(inputs)], output=str(tmp_path / "out")) == 1
    assert capsys.readouterr().err.endswith("demo: none of the 2 inputs could be read; nothing was written\n")
    assert not list((tmp_path / "out").iterdir())


def test_no_display_is_one_line_before_the_model_is_built(tiny, shared_data, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(
        gcnet.apps.demo, "Predictor", lambda *a, **k: pytest.fail("the model was built before the display was checked")
    )
    with pytest.raises(ValueError) as error:
        run_demo(tiny, confidence_threshold=0.5, inputs=[str(shared_data / "demo" / "park_bench.jpg")])
    message = str(error.value)
    assert message.startswith("--output is required: without it the drawings are shown in a window, and ")
    assert message.endswith(("there is no display (DISPLAY is not set)", "this OpenCV build cannot open windows"))


@pytest.mark.parametrize(
    "scores, said",
    [
        ([0.9, 0.7, 0.2], "2 instances drawn (score >= 0.5)"),
        ([0.6], "1 instance drawn (score >= 0.5)"),
        ([0.31, 0.2], "no instance drawn: the highest score 0.31 is below --confidence-threshold 0.5"),
        ([], "no instance drawn: the model detected nothing"),
    ],
)
def test_each_image_says_what_was_drawn(scores, said):
    instances = Instances((4, 4), scores=torch.tensor(scores))
    assert describe_predictions({"instances": instances}, 0.5) == said


def test_instances_the_predictor_dropped_are_said_by_their_highest_score(shared_data):
    """The predictor drops what scores below the threshold before pasting masks; the demo
    still says what the best of them scored, not that nothing was detected."""
    predictor = Predictor(load_config(TINY_CONFIG), device="cpu", score_threshold=1.0)
    predictions = predictor(read_image(str(shared_data / "demo" / "park_bench.jpg"), format="BGR"))
    assert len(predictions["instances"]) == 0 and 0 < predictions["highest_score"] < 1
    said = describe_predictions(predictions, 1.0)
    assert (
        said
        == f"no instance drawn: the highest score {predictions['highest_score']:.2f} is below --confidence-threshold 1"
    )
