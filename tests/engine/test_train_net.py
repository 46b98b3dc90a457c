"""tools/train_net.py end to end on CPU with the real balloon set: training, evaluation,
checkpoints, resume after SIGKILL, a dying worker, and bad input."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detectron2.config import LazyConfig, instantiate

from gcnet.engine import apply_overrides
from gcnet.engine.defaults import evaluated_checkpoint
from gcnet.utils.argument_parser import default_argument_parser

from ..helpers import REPO_ROOT, TINY_CONFIG, run_tool, tool_env

QUICK_START = "configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py"


def read_metrics(output_dir: Path):
    path = output_dir / "metrics.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start_train_net(*args, env=None, log=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "tools/train_net.py", *map(str, args)],
        cwd=REPO_ROOT,
        env=tool_env(env),
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(run: subprocess.Popen, condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if run.poll() is not None:
            raise AssertionError(f"train_net exited with {run.returncode} before {what}")
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_quick_start_trains_evaluates_and_checkpoints(datasets_root, tmp_path):
    """Training loss falls on the real balloon images; the run evaluates and checkpoints.
    (No ImageNet weights without internet: trained from scratch at a lower learning rate.)"""
    out = tmp_path / "out"
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        QUICK_START,
        "train.init_checkpoint=",
        "train.max_iter=25",
        "train.log_period=1",
        f"train.output_dir={out}",
        "optimizer.lr=0.0025",
        "train.seed=0",
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(out)
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert len(losses) == 25
    start, end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert end < 0.85 * start, (start, end)  # 0.78 with this seed
    final = metrics[-1]
    assert final["iteration"] == 25 and 0 <= final["segm/AP"] <= 100 and "bbox/AP" in final
    assert {"model_final.pth", "model_best.pth", "last_checkpoint", "log.txt"} <= {p.name for p in out.iterdir()}
    assert (out / "model_best.pth").samefile(out / "model_final.pth")  # evaluated at the end: one file, two names
    assert list(out.glob("events.out.tfevents.*"))
    log = (out / "log.txt").read_text()
    assert "eta 0:" in log and "Evaluation results for segm" in log


def test_sigkill_then_resume_continues_iteration_and_schedule(datasets_root, tmp_path):
    out = tmp_path / "out"
    args = [
        "--config-file",
        TINY_CONFIG,
        "--resume",
        "train.max_iter=40",
        "train.checkpointer.period=6",
        "train.checkpointer.max_to_keep=2",
        "train.log_period=1",
        f"train.output_dir={out}",
    ]
    env = {"DETECTRON2_DATASETS": str(datasets_root)}
    with open(tmp_path / "first.log", "w") as log:
        run = start_train_net(*args, env=env, log=log)
        try:
            # Kill while a checkpoint is being written, once one complete checkpoint exists.
            wait_for(run, lambda: (out / "last_checkpoint").exists() and list(out.glob("*.partial")), 300, "a save")
            os.killpg(run.pid, signal.SIGKILL)
        finally:
            run.wait()
    assert "Resume: no checkpoint in" in (tmp_path / "first.log").read_text()
    resumed_from = (out / "last_checkpoint").read_text()
    last_done = int(resumed_from[len("model_") : -len(".pth")])

    result = run_tool("tools/train_net.py", *args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert f"Removing {out}/model_{last_done + 6:07d}.pth.partial, left by an interrupted save" in log
    assert f"Starting training from iteration {last_done + 1}" in log

    # One entry per iteration: the killed run's entries past the checkpoint were dropped.
    assert [m["iteration"] for m in read_metrics(out) if "lr" in m] == list(range(40))
    metrics = {m["iteration"]: m for m in read_metrics(out) if "lr" in m}
    cfg = LazyConfig.load(TINY_CONFIG)
    multiplier = instantiate(cfg.lr_multiplier)
    for it in range(last_done + 1, 40):  # the schedule went on where it was
        assert metrics[it]["lr"] == pytest.approx(cfg.optimizer.lr * multiplier(it / 40)), it


def child_pids(pid):
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def is_running(pid):
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_throughput_knobs_reach_the_model(datasets_root, tmp_path):
    """train.channels_last puts the model in channels_last memory format (its checkpoint keeps
    it); train.cudnn_benchmark is a known key, read by gcnet.engine.run_setup.setup_run."""
    import torch

    out = tmp_path / "out"
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        TINY_CONFIG,
        "train.max_iter=2",
        "train.log_period=1",
        f"train.output_dir={out}",
        "train.channels_last=True",
        "train.cudnn_benchmark=True",
        env={"DETECTRON2_DATASETS": str(datasets_root), "PYTHONWARNINGS": ""},  # Python's default warning filters
    )
    assert result.returncode == 0, result.stderr[-3000:]
    weights = torch.load(out / "model_final.pth", weights_only=True)["model"]
    convs = {k: v for k, v in weights.items() if v.dim() == 4 and v.shape[-1] > 1}
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last) for v in convs.values())
    assert [m["iteration"] for m in read_metrics(out) if "total_loss" in m] == [0, 1]
    # A console a person can follow: a short header, the model and environment in files,
    # lines within 120 columns, no colour codes in log.txt, no known library warnings.
    console = result.stdout.replace(str(tmp_path), "/tmp/x").splitlines()  # paths of a usual length
    assert all(len(line) <= 120 for line in console), max(console, key=len)
    assert not any(line.startswith("GeneralizedRCNN(") for line in console) and len(console) < 30, result.stdout
    assert "GeneralizedRCNN(" in (out / "model.txt").read_text() and "PyTorch" in (out / "env.txt").read_text()
    assert "\x1b[" not in (out / "log.txt").read_text()
    known = ("torch.jit", "pkg_resources", "torch.meshgrid", "No CUDA runtime", "is_fx_tracing")
    assert not [k for k in known if k in result.stdout + result.stderr], result.stderr
    # --eval-only without train.init_checkpoint evaluates the run's own last checkpoint;
    # --verbose brings the environment and the full config back to the console.
    result = run_tool(
        "tools/train_net.py", "--config-file", TINY_CONFIG, "--eval-only", "--verbose", f"train.output_dir={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Evaluating {out}/model_final.pth (the last checkpoint of {out})" in result.stdout
    assert "Environment info:" in result.stdout and "Full config:" in result.stdout


def test_dead_worker_stops_the_whole_run(datasets_root, tmp_path, free_port):
    out = tmp_path / "out"
    run = start_train_net(
        "--config-file",
        TINY_CONFIG,
        "--num-gpus",
        "2",
        "--dist-url",
        f"tcp://127.0.0.1:{free_port}",
        "train.max_iter=100000",
        "train.log_period=1",
        f"train.output_dir={out}",
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    try:
        wait_for(run, lambda: len(read_metrics(out)) >= 3, 300, "training to start")
        workers = [p for p in child_pids(run.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)
        returncode = run.wait(timeout=120)  # raises TimeoutExpired if the others hang on
        assert returncode != 0
        assert not [p for p in workers if is_running(p)]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def test_unknown_override_key_names_the_closest(tmp_path):
    result = run_tool(
        "tools/train_net.py", "--config-file", TINY_CONFIG, "train.max_iterr=5", f"train.output_dir={tmp_path}"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "train_net: Unknown config key 'train.max_iterr' in override 'train.max_iterr=5'; "
        "closest valid keys: train.max_iter"
    )
    assert not (tmp_path / "metrics.json").exists()


def test_missing_dataset_is_one_clear_line(tmp_path):
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        TINY_CONFIG,
        f"train.output_dir={tmp_path}",
        env={"DETECTRON2_DATASETS": str(tmp_path / "datasets")},
    )
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("train_net: Dataset 'balloon_train' not found: expected the annotations")
    assert f"DETECTRON2_DATASETS={tmp_path / 'datasets'}" in line and "tools/prepare_datasets.py balloon" in line


@pytest.mark.parametrize(
    "argv, last, expected, line",
    [
        (["train.init_checkpoint=w.pth"], "out/model_final.pth", "w.pth", "Evaluating w.pth (train.init_checkpoint)"),
        (
            [],
            "out/model_final.pth",
            "out/model_final.pth",
            "Evaluating out/model_final.pth (the last checkpoint of out)",
        ),
        (["--resume"], "out/model_0000099.pth", "out/model_0000099.pth", "Evaluating out/model_0000099.pth (the last"),
        ([], "", "imagenet.pkl", "Evaluating imagenet.pkl (the config's train.init_checkpoint: no checkpoint in out)"),
    ],
)
def test_eval_only_checkpoint_order(argv, last, expected, line, caplog):
    args = default_argument_parser().parse_args(["--config-file", "c.py", "--eval-only", *argv])
    cfg = LazyConfig.load(TINY_CONFIG)
    cfg.train.output_dir, cfg.train.init_checkpoint = "out", "imagenet.pkl"
    if args.opts:
        cfg = apply_overrides(cfg, args.opts)
    with caplog.at_level(logging.INFO, logger="detectron2"):
        assert evaluated_checkpoint(args, cfg, last) == expected
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("Evaluating")][0].startswith(line)


def test_eval_only_resume_without_a_checkpoint_is_one_line():
    args = default_argument_parser().parse_args(["--config-file", "c.py", "--eval-only", "--resume"])
    cfg = LazyConfig.load(TINY_CONFIG)
    cfg.train.output_dir = "out"
    with pytest.raises(ValueError, match=r"^--eval-only --resume: no checkpoint in out .*train.init_checkpoint"):
        evaluated_checkpoint(args, cfg, "")


def test_missing_coco_names_the_layout_and_the_download(tmp_path, monkeypatch):
    """As detectron2 registers coco_2017_val, under a $DETECTRON2_DATASETS without COCO."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from gcnet.data import require_datasets

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    name = f"coco_2017_val_{tmp_path.name}"
    DatasetCatalog.register(name, list)
    json_file, image_root = tmp_path / "coco/annotations/instances_val2017.json", tmp_path / "coco/val2017"
    MetadataCatalog.get(name).set(json_file=str(json_file), image_root=str(image_root))
    with pytest.raises(FileNotFoundError) as error:
        require_datasets([name])
    assert str(error.value) == (
        f"Dataset '{name}' not found: expected the annotations {json_file} and the images under {image_root}/. "
        "The layout is $DETECTRON2_DATASETS/coco/{train2017,val2017,annotations} "
        f"(DETECTRON2_DATASETS={tmp_path}). Download train2017.zip, val2017.zip and annotations_trainval2017.zip from "
        f"https://cocodataset.org/#download and unpack them into {tmp_path}/coco"
    )
    require_datasets(["no_such_dataset"])  # unknown names are detectron2's to report
