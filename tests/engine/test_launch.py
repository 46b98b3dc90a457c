"""Launch options are parsed wherever they stand or refused in one line before any process
starts; the machines of a run meet within a bounded time or are told why not, in one line."""

import subprocess
import sys
import threading
import time

import pytest

from gcnet.engine.launch import RendezvousError, meet_machines
from gcnet.utils.argument_parser import default_argument_parser

from ..helpers import REPO_ROOT, TINY_CONFIG, run_tool, tool_env


def test_options_after_the_overrides_are_options():
    args = default_argument_parser().parse_args(
        ["--config-file", "c.py", "train.max_iter=5", "--num-machines", "2", "a.b=c", "--machine-rank", "1"]
    )
    assert (args.num_machines, args.machine_rank, args.opts) == (2, 1, ["train.max_iter=5", "a.b=c"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-machines", "2", "--machine-rank", "2"], "--machine-rank must be in 0..1 for --num-machines 2, got 2"),
        (["--num-gpus", "0"], "--num-gpus must be at least 1 (processes per machine), got 0"),
        (
            ["--num-machines", "2", "--dist-url", "auto"],
            "--dist-url auto works on one machine only: give tcp://<ip of machine 0>:<port>",
        ),
        (["--dist-url", "tcp://host"], "--dist-url tcp://host must be tcp://<host>:<port>"),
        (["--rendezvous-timeout", "0"], "--dist-timeout and --rendezvous-timeout must be positive"),
        (["train.max_iter=5", "--num-nodes", "2"], "unrecognized arguments: --num-nodes 2"),
        (["train.max_iter"], "'train.max_iter' is neither an option nor a key=value override"),
    ],
)
def test_bad_launch_options_are_one_line_before_anything_starts(argv, message):
    result = run_tool("tools/train_net.py", "--config-file", TINY_CONFIG, *argv, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"train_net.py: {message} (--help lists the options)"]


def test_a_machine_alone_waits_a_bounded_time(free_port):
    url = f"tcp://127.0.0.1:{free_port}"
    start = time.monotonic()
    with pytest.raises(RendezvousError) as error:
        meet_machines(url, 2, 0, timeout=1.5)
    assert time.monotonic() - start < 10
    assert str(error.value) == (
        f"--dist-url {url}: 1 of 2 machines started within 1.5 s (--machine-rank 0); start the same command on every "
        "machine, each with its --machine-rank, or give --rendezvous-timeout more time"
    )
    start = time.monotonic()
    with pytest.raises(RendezvousError, match=rf"^--dist-url {url}: machine 0 did not answer within 1.5 s \("):
        meet_machines(url, 2, 1, timeout=1.5)
    assert time.monotonic() - start < 10


def test_machines_meet_and_a_rank_given_twice_is_named(free_port):
    url = f"tcp://127.0.0.1:{free_port}"
    errors = {}

    def machine(rank, key):
        try:
            meet_machines(url, 2, rank, timeout=20)
        except RendezvousError as e:
            errors[key] = str(e)

    threads = [threading.Thread(target=machine, args=(rank, rank)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == {}
    first = threading.Thread(target=machine, args=(0, "first"))
    first.start()
    time.sleep(1)
    machine(0, "second")  # two machines with --machine-rank 0: the port is taken
    machine(1, "third")
    first.join()
    assert errors["second"].startswith(f"--dist-url {url}: machine 0 cannot listen there (")
    assert "another machine started with --machine-rank 0" in errors["second"]
    assert "first" not in errors and "third" not in errors


def test_two_machines_train_over_loopback(datasets_root, tmp_path, free_port):
    """Two train_net processes as two machines of one run, their launch options after the
    overrides: both train, as ranks 0 and 1 of a world of 2."""
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "tools/train_net.py",
                "--config-file",
                TINY_CONFIG,
                "train.max_iter=1",
                f"train.output_dir={tmp_path / f'machine{rank}'}",
                "--num-machines",
                "2",
                "--machine-rank",
                str(rank),
                "--dist-url",
                f"tcp://127.0.0.1:{free_port}",
                "--rendezvous-timeout",
                "120",
            ],
            cwd=REPO_ROOT,
            env=tool_env({"DETECTRON2_DATASETS": str(datasets_root)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert "Device cpu, 2 process(es), 1 iterations" in outputs[0]
    assert (tmp_path / "machine0" / "model_final.pth").is_file()
