"""Jobs through submitit: each node runs the tool as one machine of a launch; a preempted
training job (submitit's local executor, which requeues as SLURM does) stops, is requeued with
--resume and finishes from its last checkpoint; bad commands are refused before submitting."""

import os
import re
import signal
import time
from pathlib import Path

import pytest
from submitit.helpers import TorchDistributedEnvironment

from gcnet.engine.cluster import ClusterOptions, ToolJob, submit_tool

from ..helpers import REPO_ROOT, TINY_CONFIG

TRAIN_NET = str(REPO_ROOT / "tools" / "train_net.py")


def test_each_node_runs_the_tool_as_one_machine_of_the_launch(monkeypatch):
    """Node 1 of a 2-node SLURM job: machine 1 of 2, meeting at the first node."""
    slurm = dict(
        SUBMITIT_EXECUTOR="slurm",
        SLURM_JOB_ID="4242",
        SLURM_NTASKS="2",
        SLURM_JOB_NUM_NODES="2",
        SLURM_NODEID="1",
        SLURM_PROCID="1",
        SLURM_LOCALID="0",
        SLURM_JOB_NODELIST="gpu[07-08]",
    )
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    job = ToolJob(TRAIN_NET, ["--config-file", "c.py", "train.max_iter=9"], gpus_per_node=8, cwd="/runs")
    port = TorchDistributedEnvironment().master_port
    assert job.command()[1:] == [
        TRAIN_NET,
        "--config-file",
        "c.py",
        "train.max_iter=9",
        "--num-gpus",
        "8",
        "--num-machines",
        "2",
        "--machine-rank",
        "1",
        "--dist-url",
        f"tcp://gpu07:{port}",
    ]
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    assert job.command()[-2:] == ["--dist-url", "auto"]  # one node: a free port of its own
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # requeued by SLURM, not through submitit's checkpoint
    assert job.command()[2:6] == ["--config-file", "c.py", "train.max_iter=9", "--resume"]


def test_a_preempted_training_job_resumes_from_its_last_checkpoint(datasets_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets_root))  # the job's environment is this one's
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    output = tmp_path / "run"
    args = [
        "--config-file",
        TINY_CONFIG,
        "train.max_iter=12",
        "train.checkpointer.period=4",
        f"train.output_dir={output}",
        "dataloader.train.num_workers=0",
    ]
    job = submit_tool(TRAIN_NET, args, str(tmp_path / "jobs" / "%j"), ClusterOptions(timeout_min=20), cluster="local")
    deadline = time.monotonic() + 300
    while not (output / "last_checkpoint").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (output / "last_checkpoint").read_text() == "model_0000003.pth"
    # What SLURM's preemption does to the job's first task (the controller's child, here).
    (task,) = Path(f"/proc/{job.job_id}/task/{job.job_id}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)
    job.result()
    log = Path(job.paths.stdout).read_text()
    errors = Path(job.paths.stderr).read_text()
    assert "Caught signal SIGUSR2" in errors and "train_net: training interrupted by SIGTERM at iteration" in errors
    attempts = re.findall(r"^Running .*tools/train_net.py (.*)$", log, re.MULTILINE)
    assert len(attempts) == 2 and "--resume" not in attempts[0] and attempts[1].startswith(" ".join(args) + " --resume")
    started = re.findall(r"Starting training from iteration (\d+)", log)
    assert started[0] == "0" and int(started[1]) >= 4
    assert (output / "model_final.pth").is_file() and (output / "last_checkpoint").read_text() == "model_final.pth"


AT_LEAST = "--nodes, --gpus-per-node, --cpus-per-gpu and --time must be at least 1"
ONE_NODE = "runs the job on this machine: --nodes must be 1, got 2"
LEAVE_IT_OUT = "is set for each node of the job (--nodes, --gpus-per-node): leave it out of the command"


@pytest.mark.parametrize(
    "tool, args, options, cluster, message",
    [
        ("tools/demo.py", [], {}, "local", "tools/demo.py: a job runs tools/train_net.py or tools/predict.py"),
        (TRAIN_NET, ["--num-gpus", "2"], {}, "local", f"--num-gpus {LEAVE_IT_OUT}"),
        (TRAIN_NET, ["--dist-url=tcp://a:1"], {}, "local", f"--dist-url {LEAVE_IT_OUT}"),
        (TRAIN_NET, [], {"nodes": 2}, "local", f"--cluster local {ONE_NODE}"),
        (TRAIN_NET, [], {"gpus_per_node": 0}, "local", AT_LEAST),
        (TRAIN_NET, [], {}, "pbs", "--cluster must be one of slurm, local, got pbs"),
    ],
)
def test_bad_jobs_are_refused_before_they_are_submitted(tool, args, options, cluster, message, tmp_path):
    with pytest.raises(ValueError) as error:
        submit_tool(tool, args, str(tmp_path / "jobs"), ClusterOptions(**options), cluster=cluster)
    assert str(error.value) == message
    assert not (tmp_path / "jobs").exists()


def test_slurm_is_asked_for_where_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    with pytest.raises(
        ValueError, match=r"^--cluster slurm: .*srun.*\(--cluster local runs the job on this machine\)$"
    ):
        submit_tool(TRAIN_NET, [], str(tmp_path / "jobs"), ClusterOptions(), cluster="slurm")


def test_the_job_asks_slurm_for_what_the_options_say():
    options = ClusterOptions(
        nodes=2, gpus_per_node=8, cpus_per_gpu=10, partition="learnfair", slurm_options={"mail-type": "END"}
    )
    assert options.executor_parameters() == dict(
        nodes=2,
        gpus_per_node=8,
        tasks_per_node=1,
        cpus_per_task=80,
        mem_gb=None,
        timeout_min=1440,
        name=None,
        slurm_additional_parameters={"mail-type": "END"},
        slurm_partition="learnfair",
        slurm_signal_delay_s=120,
    )
