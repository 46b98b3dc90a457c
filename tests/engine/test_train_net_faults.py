"""tools/train_net.py under faults, in-process: each ends in one line that names the file, key
or value, before the model is built where the input allows, and loses nothing."""
import json
import os
import resource
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog

from gcnet.data import register_checked_coco_instances

from ..helpers import TINY_CONFIG, load_tool, tool_env


@pytest.fixture(scope="module")
def train_net():
    return load_tool("train_net")


def run_main(train_net, *args):
    """``train_net.main`` on TINY_CONFIG; the one line it exits with."""
    with pytest.raises(SystemExit) as exit_info:
        train_net.main(train_net.parse_args(["--config-file", TINY_CONFIG, *map(str, args)]))
    message = str(exit_info.value.code)
    assert "\n" not in message
    return message


@pytest.fixture
def no_model(train_net, monkeypatch):
    """Fails the test if the model is built."""
    monkeypatch.setattr(train_net, "build_model", lambda cfg: pytest.fail("the model was built before the input was checked"))


def test_what_is_checked_before_the_model_is_built(train_net, no_model, tmp_path):
    (tmp_path / "a_file").write_text("x")
    assert run_main(train_net, f"train.output_dir={tmp_path / 'a_file' / 'out'}") == (
        f"train_net: train.output_dir {tmp_path / 'a_file' / 'out'} cannot be created: Not a directory"
    )
    out = tmp_path / "out"
    assert run_main(train_net, "--eval-only", f"train.output_dir={out}", f"train.init_checkpoint={tmp_path / 'gone.pth'}") == (
        f"train_net: train.init_checkpoint {tmp_path / 'gone.pth'}: no such file"
    )
    assert run_main(train_net, f"train.output_dir={out}", "optimizer.lr=fast") == (
        "train_net: Override 'optimizer.lr=fast': optimizer.lr takes a number (the config has 0.0025), got 'fast'"
    )
    (out / "last_checkpoint").write_text("model_0000009.pth")
    assert run_main(train_net, "--resume", f"train.output_dir={out}", "optimizer.lr=1e6") == (
        f"train_net: --resume restores the optimizer and the learning-rate schedule of the checkpoint in {out}, which "
        "would undo optimizer.lr=1e6; drop the override, or add --restart-schedule to start a new schedule with it "
        "from the checkpoint's weights"
    )


def test_a_live_run_keeps_its_output_dir(train_net, no_model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from gcnet.utils.run_lock import lock_folder; lock_folder({str(out)!r}); print('held', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=tool_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        message = run_main(train_net, f"train.output_dir={out}")
        assert message.startswith(f"train_net: train.output_dir {out} is in use by another run (pid {holder.pid} on ")
        assert message.endswith("; wait for it to end, or choose another folder")
    finally:
        holder.kill()  # the lock dies with its process, however it ends
        holder.wait()
    monkeypatch.setattr(train_net, "require_datasets", lambda names: None)  # the step after the lock
    with pytest.raises(pytest.fail.Exception, match="the model was built"):
        run_main(train_net, f"train.output_dir={out}")


def polygon(box):
    x, y, w, h = box
    return [x, y, x + w, y, x + w, y + h, x, y + h]


@pytest.fixture
def tiny_dataset(shared_data, tmp_path):
    """Register a two-image COCO dataset; returns (name, images folder, its annotations)."""

    def register(name, boxes=((50, 50, 200, 200),)):
        images = tmp_path / name
        images.mkdir()
        sources = sorted((shared_data / "balloon" / "train").glob("*.jpg"))[:2]
        sizes = [Image.open(source).size for source in sources]
        for source in sources:
            shutil.copy(source, images / source.name)
        data = {
            "images": [dict(id=i, file_name=s.name, width=w, height=h) for i, (s, (w, h)) in enumerate(zip(sources, sizes))],
            "annotations": [
                dict(id=10 * i + j, image_id=i, category_id=1, bbox=list(b), iscrowd=0, area=b[2] * b[3], segmentation=[polygon(b)])
                for i in range(len(sources))
                for j, b in enumerate(boxes)
            ],
            "categories": [dict(id=1, name="balloon")],
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
        if name not in DatasetCatalog.list():
            register_checked_coco_instances(name, {}, str(tmp_path / f"{name}.json"), str(images))
        return images

    return register


def test_an_image_that_cannot_be_decoded_is_named(train_net, tiny_dataset, tmp_path):
    images = tiny_dataset(f"gcnet_faults_truncated_{os.getpid()}")
    for image in images.iterdir():
        image.write_bytes(image.read_bytes()[:5000])
    message = run_main(train_net, f"train.output_dir={tmp_path / 'out'}", "train.max_iter=1", f"dataloader.train.dataset.names={images.name}")
    assert message.startswith(f"train_net: Cannot use {images}/") and "image file is truncated" in message
    assert message.endswith("; no checkpoint was written yet")


def test_a_dataset_left_empty_by_filtering(train_net, tiny_dataset, tmp_path):
    images = tiny_dataset(f"gcnet_faults_empty_{os.getpid()}", boxes=((-50, -50, 10, 10),))  # no area inside
    message = run_main(train_net, f"train.output_dir={tmp_path / 'out'}", f"dataloader.train.dataset.names={images.name}")
    assert message == (
        f"train_net: No valid data found in {images.name}. Every image was filtered out: images without usable "
        "annotations are dropped (dataloader.train.dataset.filter_empty=False keeps them), or the dataset lists none"
    )


def test_a_full_disk_ends_the_run_in_one_line(train_net, tiny_dataset, tmp_path):
    """Simulated with a file-size limit: writes past 1 MB fail (EFBIG), as on a full disk."""
    images = tiny_dataset(f"gcnet_faults_disk_{os.getpid()}")
    out = tmp_path / "out"
    args = [f"train.output_dir={out}", "train.max_iter=2", "train.checkpointer.period=1", f"dataloader.train.dataset.names={images.name}"]
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, limits[1]))
    try:
        message = run_main(train_net, *args)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert message == f"train_net: writing {out / 'model_0000000.pth'} failed (File too large): make room; no checkpoint was written yet"
    assert not [p.name for p in out.iterdir() if p.name.endswith((".pth", ".partial"))]


def test_eval_only_refuses_a_checkpoint_of_another_model(train_net, tmp_path):
    other = tmp_path / "linear.pth"
    torch.save({"model": torch.nn.Linear(3, 3).state_dict()}, other)
    message = run_main(train_net, "--eval-only", f"train.output_dir={tmp_path / 'out'}", f"train.init_checkpoint={other}")
    assert message.startswith(f"train_net: {other} does not fit the model of the config: ")
    assert "parameters and buffers are missing or of another shape in it (backbone." in message
    assert message.endswith("evaluate it with the config it was trained with")


def test_training_refuses_a_checkpoint_that_fills_nothing(train_net, tiny_dataset, tmp_path):
    images = tiny_dataset(f"gcnet_faults_init_{os.getpid()}")
    other = tmp_path / "linear.pth"
    torch.save({"model": torch.nn.Linear(3, 3).state_dict()}, other)
    args = [f"train.output_dir={tmp_path / 'out'}", f"train.init_checkpoint={other}", f"dataloader.train.dataset.names={images.name}"]
    assert run_main(train_net, *args).startswith(f"train_net: {other} does not fit the model of the config: ")
