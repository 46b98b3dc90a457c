"""Every stop of tools/train_net.py leaves a word and a run that resumes into the layout of a
finished one (SIGINT and SIGTERM, in training and in evaluation), and a refused run writes
nothing into its output folder."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from gcnet.engine import GCNetCheckpointer, load_config
from gcnet.engine.defaults import build_model

from ..helpers import REPO_ROOT, TINY_CONFIG, run_tool, tool_env

EVAL_CONFIG = str(REPO_ROOT / "tests" / "configs" / "mask_rcnn_R_18_FPN_gc_tiny_balloon_eval.py")


class Run:
    """tools/train_net.py in its own process group (as a shell runs it), its output collected
    line by line."""

    def __init__(self, *args, env):
        self.process = subprocess.Popen(
            [sys.executable, "tools/train_net.py", *map(str, args)],
            cwd=REPO_ROOT,
            env=tool_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stdout, self.stderr = [], []
        self.readers = [
            threading.Thread(target=lambda s=s, out=out: out.extend(s), daemon=True)
            for s, out in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        ]
        for reader in self.readers:
            reader.start()

    def wait_for(self, condition, what, timeout=300):
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, (
                f"train_net exited with {self.process.returncode} before {what}: {self.stderr}"
            )
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def printed(self, text):
        return lambda: any(text in line for line in self.stdout)

    def stop(self, signum, timeout=120):
        os.killpg(self.process.pid, signum)  # the whole group, as Ctrl-C or a scheduler does
        code = self.process.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=10)
        return code

    def kill(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def run(datasets_root):
    runs = []

    def start(*args):
        runs.append(Run(*args, env={"DETECTRON2_DATASETS": str(datasets_root)}))
        return runs[-1]

    yield start
    for r in runs:
        r.kill()


def test_sigterm_in_training_says_where_it_stopped_and_how_to_resume(run, tmp_path):
    out = tmp_path / "out"
    args = [
        "--config-file",
        TINY_CONFIG,
        "train.max_iter=1000",
        "train.checkpointer.period=2",
        f"train.output_dir={out}",
    ]
    training = run(*args)
    training.wait_for(lambda: (out / "last_checkpoint").exists(), "a checkpoint")
    assert training.stop(signal.SIGTERM) == 143
    last = (out / "last_checkpoint").read_text()
    assert re.fullmatch(
        rf"train_net: training interrupted by SIGTERM at iteration \d+; the last complete checkpoint is {out / last}; "
        rf"continue with: python tools/train_net.py --resume {re.escape(' '.join(args))}\n",
        "".join(training.stderr[-1:]),
    ), training.stderr
    assert not [line for line in training.stderr if "Traceback" in line]
    assert not (out / ".run.lock").exists()


def test_sigint_in_the_final_evaluation_then_resume_keeps_a_finished_layout(run, datasets_root, tmp_path):
    """Ctrl-C while the last iteration's weights are evaluated: one line and exit 130; the
    resume evaluates them again and links model_best to model_final, as a run that was never
    stopped (not a second copy, and last_checkpoint still names model_final)."""
    out = tmp_path / "out"
    args = ["--config-file", EVAL_CONFIG, "train.max_iter=2", f"train.output_dir={out}"]
    training = run(*args)
    training.wait_for(training.printed("Start inference on"), "the final evaluation")
    assert training.stop(signal.SIGINT) == 130
    assert training.stderr[-1].startswith(
        "train_net: training interrupted by SIGINT in the final evaluation; the last complete "
    )
    assert not [line for line in training.stderr if "Traceback" in line or "KeyboardInterrupt" in line]
    assert sorted(p.name for p in out.glob("model_*")) == ["model_final.pth"]

    resumed = run_tool("tools/train_net.py", "--resume", *args, env={"DETECTRON2_DATASETS": str(datasets_root)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Evaluation results for bbox" in resumed.stdout
    assert sorted(p.name for p in out.glob("model_*")) == ["model_best.pth", "model_final.pth"]
    assert (out / "model_best.pth").samefile(out / "model_final.pth")
    assert (out / "last_checkpoint").read_text() == "model_final.pth"


def test_sigterm_in_eval_only_is_one_line(run, tmp_path):
    evaluation = run("--config-file", EVAL_CONFIG, "--eval-only", f"train.output_dir={tmp_path / 'out'}")
    evaluation.wait_for(evaluation.printed("Start inference on"), "the evaluation")
    assert evaluation.stop(signal.SIGTERM) == 143
    assert evaluation.stderr == [
        "train_net: evaluation interrupted by SIGTERM; no results were written; run the command again\n"
    ]


@pytest.fixture
def finished_run(tmp_path):
    """A run folder of the tiny config: its checkpoint, config.yaml and log.txt."""
    out = tmp_path / "out"
    cfg = load_config(TINY_CONFIG, [f"train.output_dir={out}"])
    model = build_model(cfg)
    GCNetCheckpointer(model, str(out)).save("model_0000009", iteration=9)
    (out / "config.yaml").write_text("the config the run was trained with\n")
    (out / "log.txt").write_text("the run's log\n")
    return out


@pytest.mark.parametrize("mode", ["--resume", "--eval-only"])
def test_a_refused_run_writes_nothing(finished_run, datasets_root, mode):
    """A checkpoint that does not fit the changed model is refused in one line naming the
    mismatch and the way out, with no warnings before it; config.yaml, log.txt and the lock
    are as they were."""
    before = {p.name: p.read_bytes() for p in finished_run.iterdir()}
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        TINY_CONFIG,
        mode,
        f"train.output_dir={finished_run}",
        "model.backbone.bottom_up.depth=34",
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    line = result.stderr.strip()
    assert line.startswith(
        f"train_net: {finished_run / 'model_0000009.pth'} does not fit the model of the config: 136 of its 320 "
        "parameters and buffers are missing or of another shape in it (backbone.bottom_up.res2.2.conv1.weight is "
        "missing; "
    )
    assert "the config builds a GeneralizedRCNN of 22.2M values in 320 tensors, the checkpoint holds 12.0M" in line
    way_out = "evaluate it with the config it was trained with" if mode == "--eval-only" else "resume with the config"
    assert way_out in line
    assert "WARNING" not in result.stdout and "Skip loading" not in result.stdout
    assert {p.name: p.read_bytes() for p in finished_run.iterdir()} == before
