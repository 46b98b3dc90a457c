"""A run under faults: each ends in one line that names the file, key or value, before the model
is built where the input allows, and loses nothing. The library pieces of tools/train_net.py are
driven in-process in the order the tool runs them; tools/train_net.py itself in a subprocess."""

import json
import os
import resource
import shutil
import subprocess
import sys
import types

import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog

from gcnet.data import register_checked_coco_instances
from gcnet.engine import (
    TRAINING_KEYS,
    CheckpointMismatchError,
    checkpoint_state,
    exit_on_bad_input,
    exit_on_stop,
    load_config,
)
from gcnet.engine.defaults import (
    build_model,
    build_optimizer,
    build_train_loader,
    build_trainer,
    check_before_building,
    default_hooks,
    load_evaluated_checkpoint,
    load_training_checkpoint,
    writer_hooks,
)
from gcnet.engine.run_setup import seed_run, start_run

from ..helpers import TINY_CONFIG, run_tool, tool_env


def run_args(*opts, eval_only=False, resume=False):
    """The arguments tools/train_net.py parses."""
    return types.SimpleNamespace(
        config_file=TINY_CONFIG, opts=list(opts), eval_only=eval_only, resume=resume, restart_schedule=False
    )


def checked_config(*opts, **flags):
    """What tools/train_net.py checks before it builds a model."""
    args = run_args(*map(str, opts), **flags)
    cfg = load_config(TINY_CONFIG, args.opts, required=TRAINING_KEYS)
    check_before_building(args, cfg)
    return args, cfg


def train_in_process(*opts):
    """tools/train_net.py's do_train; the one line it exits with."""
    args, cfg = checked_config(*opts)
    with pytest.raises(SystemExit) as exit_info:
        with exit_on_bad_input("train_net"):
            model = build_model(cfg)
            trainer = build_trainer(cfg, model, build_train_loader(cfg), build_optimizer(cfg, model))
            trainer.register_hooks(default_hooks(cfg, trainer, dict))
            start_iter = load_training_checkpoint(args, cfg, trainer.checkpointer)
        start_run(cfg, args, model)
        trainer.register_hooks(writer_hooks(cfg, start_iter))
        with exit_on_stop("train_net", "training", state=checkpoint_state(cfg.train.output_dir)):
            trainer.train(start_iter, cfg.train.max_iter)
    message = str(exit_info.value.code)
    assert "\n" not in message
    return message


def test_what_is_checked_before_the_model_is_built(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError) as error:
        checked_config(f"train.output_dir={tmp_path / 'a_file' / 'out'}")
    assert str(error.value) == f"train.output_dir {tmp_path / 'a_file' / 'out'} cannot be created: Not a directory"
    out = tmp_path / "out"
    with pytest.raises(ValueError) as error:
        checked_config(f"train.output_dir={out}", f"train.init_checkpoint={tmp_path / 'gone.pth'}", eval_only=True)
    assert str(error.value) == f"train.init_checkpoint {tmp_path / 'gone.pth'}: no such file"
    with pytest.raises(ValueError) as error:
        checked_config(f"train.output_dir={out}", "optimizer.lr=fast")
    assert str(error.value) == (
        "Override 'optimizer.lr=fast': optimizer.lr takes a number (the config has 0.0025), got 'fast'"
    )
    out.mkdir()
    (out / "last_checkpoint").write_text("model_0000009.pth")
    with pytest.raises(ValueError) as error:
        checked_config(f"train.output_dir={out}", "optimizer.lr=1e6", resume=True)
    assert str(error.value) == (
        f"--resume restores the optimizer and the learning-rate schedule of the checkpoint in {out}, which "
        "would undo optimizer.lr=1e6; drop the override, or add --restart-schedule to start a new schedule with it "
        "from the checkpoint's weights"
    )
    assert not (tmp_path / "a_file.out").exists() and sorted(p.name for p in out.iterdir()) == ["last_checkpoint"]


def test_train_net_says_it_in_one_line_before_building_the_model(tmp_path):
    """The tool prefixes the library's sentence with its name, and builds no model first."""
    (tmp_path / "a_file").write_text("x")
    result = run_tool(
        "tools/train_net.py", "--config-file", TINY_CONFIG, f"train.output_dir={tmp_path / 'a_file' / 'out'}"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"train_net: train.output_dir {tmp_path / 'a_file' / 'out'} cannot be created: Not a directory"
    ]
    assert "Model GeneralizedRCNN" not in result.stdout


def test_a_live_run_keeps_its_output_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from gcnet.utils.run_lock import lock_folder; lock_folder({str(out)!r}); print('held', flush=True); "
            f"input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=tool_env(),
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ValueError) as error:
            checked_config(f"train.output_dir={out}")
        message = str(error.value)
        assert message.startswith(f"train.output_dir {out} is in use by another run (pid {holder.pid} on ")
        assert message.endswith("; wait for it to end, or choose another folder")
    finally:
        holder.kill()  # the lock dies with its process, however it ends
        holder.wait()
    checked_config(f"train.output_dir={out}")  # the dead holder's lock file does not stop the next run


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
            "images": [
                dict(id=i, file_name=s.name, width=w, height=h) for i, (s, (w, h)) in enumerate(zip(sources, sizes))
            ],
            "annotations": [
                dict(
                    id=10 * i + j,
                    image_id=i,
                    category_id=1,
                    bbox=list(b),
                    iscrowd=0,
                    area=b[2] * b[3],
                    segmentation=[polygon(b)],
                )
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


def test_an_image_that_cannot_be_decoded_is_named(tiny_dataset, tmp_path):
    images = tiny_dataset(f"gcnet_faults_truncated_{os.getpid()}")
    for image in images.iterdir():
        image.write_bytes(image.read_bytes()[:5000])
    message = train_in_process(
        f"train.output_dir={tmp_path / 'out'}", "train.max_iter=1", f"dataloader.train.dataset.names={images.name}"
    )
    assert message.startswith(f"train_net: Cannot use {images}/") and "image file is truncated" in message
    assert message.endswith("; no checkpoint was written yet")


def test_a_dataset_left_empty_by_filtering(tiny_dataset, tmp_path):
    images = tiny_dataset(f"gcnet_faults_empty_{os.getpid()}", boxes=((-50, -50, 10, 10),))  # no area inside
    message = train_in_process(f"train.output_dir={tmp_path / 'out'}", f"dataloader.train.dataset.names={images.name}")
    assert message == (
        f"train_net: No valid data found in {images.name}. Every image was filtered out: images without usable "
        "annotations are dropped (dataloader.train.dataset.filter_empty=False keeps them), or the dataset lists none"
    )
    assert not (tmp_path / "out").exists()  # refused before the run started: nothing written


def test_a_full_disk_ends_the_run_in_one_line(tiny_dataset, tmp_path):
    """Simulated with a file-size limit: writes past 1 MB fail (EFBIG), as on a full disk."""
    images = tiny_dataset(f"gcnet_faults_disk_{os.getpid()}")
    out = tmp_path / "out"
    args = [
        f"train.output_dir={out}",
        "train.max_iter=2",
        "train.checkpointer.period=1",
        f"dataloader.train.dataset.names={images.name}",
    ]
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, limits[1]))
    try:
        message = train_in_process(*args)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert (
        message
        == f"train_net: writing {out / 'model_0000000.pth'} failed (File too large): make room; no checkpoint was "
        f"written yet"
    )
    assert not [p.name for p in out.iterdir() if p.name.endswith((".pth", ".partial"))]


def test_eval_only_refuses_a_checkpoint_of_another_model(tmp_path):
    other = tmp_path / "linear.pth"
    torch.save({"model": torch.nn.Linear(3, 3).state_dict()}, other)
    args, cfg = checked_config(f"train.output_dir={tmp_path / 'out'}", f"train.init_checkpoint={other}", eval_only=True)
    with pytest.raises(CheckpointMismatchError) as error:
        load_evaluated_checkpoint(args, cfg, build_model(cfg))
    message = str(error.value)
    assert message.startswith(f"{other} does not fit the model of the config: ")
    assert "parameters and buffers are missing or of another shape in it (backbone." in message
    assert (
        "the config builds a GeneralizedRCNN of 12.0M values in 184 tensors, the checkpoint holds 0.0M values in 2 "
        "tensors" in message
    )
    assert message.endswith("evaluate it with the config it was trained with")


def test_training_refuses_a_checkpoint_that_fills_nothing(tiny_dataset, tmp_path):
    images = tiny_dataset(f"gcnet_faults_init_{os.getpid()}")
    other = tmp_path / "linear.pth"
    torch.save({"model": torch.nn.Linear(3, 3).state_dict()}, other)
    args = [
        f"train.output_dir={tmp_path / 'out'}",
        f"train.init_checkpoint={other}",
        f"dataloader.train.dataset.names={images.name}",
    ]
    message = train_in_process(*args)
    assert message.startswith(f"train_net: {other} does not fit the model of the config: it fills none of the model's ")
    assert message.endswith(
        "give the checkpoint of this architecture, or train.init_checkpoint_partial=True to load what fits"
    )
    assert not (tmp_path / "out").exists()


def test_train_seed_makes_the_initial_weights_the_same(tmp_path):
    """train.seed seeds the generators before the model is built (tools/train_net.py calls
    seed_run right after the checks), so that two runs start from the same weights."""
    weights = []
    for _ in range(2):
        args, cfg = checked_config(f"train.output_dir={tmp_path / 'out'}", "train.seed=3")
        seed_run(cfg, args)
        weights.append(build_model(cfg).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
