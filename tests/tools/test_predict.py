"""tools/predict.py as a user runs it: killed (SIGKILL) and run again it ends with the results
of an uninterrupted run, then has nothing to do; two processes over gloo write the results of
one; bad input is one line before the model is built."""

import re
import shutil
import subprocess
import sys
import time

import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from gcnet.engine import GCNetCheckpointer

from ..helpers import REPO_ROOT, TINY_EVAL_CONFIG, predict_in_process, run_tool, tool_env

RESULTS = ("predictions.json", "images.json", "unreadable.json")
# What a run of the input below ends with.
SUMMARY = "predictions.json (100 instances), images.json (20 images), unreadable.json (2 images that could not be read)"
# Results are the same for the same number of threads a process sums with.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data):
    """The input (a text file listing 20 COCO photos, a missing file and one that is not an
    image), the options of the runs, and the results of one uninterrupted run in this process."""
    folder = tmp_path_factory.mktemp("predict")
    photos = sorted((shared_data / "tiny_coco" / "val2017").glob("*.jpg"))[:20]
    (folder / "notes.txt").write_text("not an image")
    listed = [*map(str, photos[:10]), "missing.jpg", "notes.txt", *map(str, photos[10:])]
    (folder / "images.txt").write_text("\n".join(listed) + "\n")
    cfg = LazyConfig.load(TINY_EVAL_CONFIG)
    torch.manual_seed(0)
    GCNetCheckpointer(instantiate(cfg.model), save_dir=str(folder)).save("model")
    overrides = [f"train.init_checkpoint={folder / 'model.pth'}", "model.proposal_generator.post_nms_topk=[1000,100]"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg.train.init_checkpoint, cfg.model.proposal_generator.post_nms_topk = str(folder / "model.pth"), [1000, 100]
        predict_in_process(cfg, [folder / "images.txt"], folder / "reference", shard_size=2, batch_size=2)
    finally:
        torch.set_num_threads(threads)
    args = [
        "tools/predict.py",
        "--config-file",
        TINY_EVAL_CONFIG,
        "--input",
        str(folder / "images.txt"),
        "--shard-size",
        "2",
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--opts",
        *overrides,
    ]
    return folder, args


def assert_same_results(output, reference):
    for name in RESULTS:
        assert (output / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_killed_run_continues_to_the_same_results_then_has_nothing_to_do(run):
    folder, args = run
    output = folder / "killed"
    killed = subprocess.Popen(
        [sys.executable, *args, "--output", str(output)],
        cwd=REPO_ROOT,
        env=tool_env(ONE_THREAD),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (output / "shards" / "000001.json").exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.kill()
    killed.wait()
    finished = len(list((output / "shards").glob("*.json")))
    assert 2 <= finished < 11 and not (output / "predictions.json").exists()
    resumed = run_tool(*args, "--output", output, env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Predicting {22 - 2 * finished} of 22 images ({11 - finished} of 11 shards of 2)" in resumed.stdout
    assert SUMMARY in resumed.stdout
    assert_same_results(output, folder / "reference")
    again = run_tool(*args, "--output", output, env=ONE_THREAD)
    assert again.returncode == 0, again.stderr
    assert (again.stdout + again.stderr).splitlines() == [
        f"predict: nothing to do: the 22 images of --input are predicted in {output}"
    ]


def test_two_processes_write_the_results_of_one(run):
    folder, args = run
    result = run_tool(*args, "--output", folder / "two", "--num-gpus", "2", "--dist-url", "auto", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "Predicting 22 of 22 images (11 of 11 shards of 2) in 2 process(es)" in result.stdout
    assert_same_results(folder / "two", folder / "reference")
    assert not (folder / "two" / "shards").exists()


def test_bad_input_is_one_line_before_the_model_is_built(run, tmp_path):
    folder, args = run
    shutil.copytree(folder / "reference", tmp_path / "other")
    result = run_tool(*args, "--output", tmp_path / "other", "--batch-size", "4", env=ONE_THREAD)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"predict: --output {tmp_path / 'other'} holds the predictions of another run (--batch-size 2 then, 4 now): "
        "give another folder, or remove it to start afresh"
    ]
    result = run_tool("tools/predict.py", "--model", "x", "--input", "a", "--output", "b", "--num-workers", "-1")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "predict.py: --num-workers must be at least 0, got -1 (--help lists the options)"
    ]


def test_a_job_submitted_to_this_machine_writes_the_same_results(run):
    folder, args = run
    submit = ["tools/submit.py", "--nodes", "1", "--gpus-per-node", "1", "--cluster", "local", "--time", "10"]
    submit += ["--slurm", "mail-type=END"]  # for SLURM only: this machine's job goes without it
    result = run_tool(
        *submit, "--job-dir", folder / "jobs" / "%j", "--wait", *args, "--output", folder / "job", env=ONE_THREAD
    )
    assert result.returncode == 0, result.stderr
    job_id = re.match(r"Submitted job (\d+); logs: ", result.stdout).group(1)
    logs = folder / "jobs" / job_id
    assert result.stdout.splitlines() == [
        f"Submitted job {job_id}; logs: {logs / f'{job_id}_0_log.out'} and {logs / f'{job_id}_0_log.err'}",
        f"Job {job_id} finished",
    ]
    assert SUMMARY in (logs / f"{job_id}_0_log.out").read_text()
    assert_same_results(folder / "job", folder / "reference")
    refused = run_tool(*submit, *args, "--num-gpus", "2", "--output", folder / "refused")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "submit: --num-gpus is set for each node of the job (--nodes, --gpus-per-node): leave it out of the command"
    ]
