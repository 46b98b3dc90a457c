"""Training and prediction jobs on a SLURM cluster, through submitit (the launcher of DETR and
much detectron2-based research code).

One job runs ``tools/train_net.py`` or ``tools/predict.py`` on ``nodes`` nodes: a task on each
node starts the tool as one machine of a multi-machine launch (``--num-gpus`` processes,
``--num-machines`` the job's nodes, ``--machine-rank`` the node's, ``--dist-url`` the first
node's address), as a person would type it on each machine. When SLURM preempts the job or it
reaches its time limit, submitit signals the first task (``USR2``, ``signal_delay_s`` before
the end), which stops the tool (``SIGTERM``: a training run ends at its last complete
checkpoint, a prediction at its last finished shard) and requeues the job with the same
command plus what resumes it (``--resume`` for training; prediction resumes by itself).
submitit writes each task's output to ``<job dir>/<job id>_<task>_log.out`` and ``.err``,
where a requeued job appends.
"""

import dataclasses
import os
import signal
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment

from gcnet.utils.argument_parser import LAUNCH_OPTIONS

__all__ = ["ClusterOptions", "ToolJob", "ToolFailed", "submit_tool", "SUBMITTED_TOOLS", "CLUSTERS"]

# The tools a job runs, and the options a requeued job adds to resume.
SUBMITTED_TOOLS: Dict[str, Sequence[str]] = {"train_net.py": ("--resume",), "predict.py": ()}
# Where jobs run: SLURM, or this machine (one node: submitit's local executor, to try a job).
CLUSTERS = ("slurm", "local")
# Seconds a stopped tool has to end before it is killed.
STOP_GRACE_SECONDS = 60


class ToolFailed(RuntimeError):
    """The tool of a job ended with an error (said in its log)."""


@dataclasses.dataclass
class ClusterOptions:
    """The resources of a job: ``nodes`` nodes with ``gpus_per_node`` GPUs each (one tool
    process per GPU), ``cpus_per_gpu`` CPUs a GPU, ``mem_gb`` a node (None: the partition's
    default), for ``timeout_min`` minutes; SLURM's ``partition``, ``account``, ``qos``,
    ``constraint`` and ``comment`` (None: not asked), any other sbatch option in
    ``slurm_options`` (``{"mail-type": "END"}``), and the seconds before the time limit at which
    the job is told to stop (``signal_delay_s``)."""

    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_gpu: int = 8
    mem_gb: Optional[float] = None
    timeout_min: int = 24 * 60
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    comment: Optional[str] = None
    slurm_options: Dict[str, str] = dataclasses.field(default_factory=dict)
    signal_delay_s: int = 120
    name: Optional[str] = None

    def problem(self, cluster: str) -> str:
        """What is wrong with these options on ``cluster`` ("" if nothing is)."""
        if min(self.nodes, self.gpus_per_node, self.cpus_per_gpu, self.timeout_min) < 1:
            return "--nodes, --gpus-per-node, --cpus-per-gpu and --time must be at least 1"
        if cluster == "local" and self.nodes != 1:
            return f"--cluster local runs the job on this machine: --nodes must be 1, got {self.nodes}"
        return ""

    def executor_parameters(self) -> Dict:
        """The parameters of submitit's ``AutoExecutor.update_parameters``: one task a node."""
        slurm = dict(partition=self.partition, account=self.account, qos=self.qos, constraint=self.constraint)
        slurm.update(comment=self.comment, signal_delay_s=self.signal_delay_s)
        return dict(
            nodes=self.nodes,
            gpus_per_node=self.gpus_per_node,
            tasks_per_node=1,
            cpus_per_task=self.cpus_per_gpu * self.gpus_per_node,
            mem_gb=self.mem_gb,
            timeout_min=self.timeout_min,
            name=self.name,
            slurm_additional_parameters=dict(self.slurm_options) or None,
            **{f"slurm_{key}": value for key, value in slurm.items() if value is not None},
        )


class ToolJob(Checkpointable):
    """What each task of a job runs: ``python <tool> <args>`` with the launch options of its
    node, from the folder ``cwd``; requeued (:meth:`checkpoint`) with the tool's resume option."""

    def __init__(self, tool: str, args: Sequence[str], gpus_per_node: int, cwd: str):
        self.tool, self.args, self.gpus_per_node, self.cwd = tool, list(args), gpus_per_node, cwd
        self.process: Optional[subprocess.Popen] = None
        self.stopping = False

    def __getstate__(self) -> Dict:
        return dict(self.__dict__, process=None, stopping=False)  # what a (re)submission sends: no process

    def resumed_args(self) -> List[str]:
        """The tool's arguments with its resume option (:data:`SUBMITTED_TOOLS`)."""
        resume = [option for option in SUBMITTED_TOOLS[os.path.basename(self.tool)] if option not in self.args]
        return [*self.args, *resume]

    def command(self) -> List[str]:
        """The tool's command line on this node of the job; with the tool's resume option when
        SLURM itself requeued the job (``SLURM_RESTART_COUNT``: a preemption that submitit did
        not see, a node failure)."""
        job = submitit.JobEnvironment()
        if job.num_nodes == 1:
            dist_url = "auto"  # a free port of this node: jobs that share a node do not collide
        else:
            env = TorchDistributedEnvironment()  # the first node, and a port drawn from the job id
            dist_url = f"tcp://{env.master_addr}:{env.master_port}"
        launch = ["--num-gpus", str(self.gpus_per_node), "--num-machines", str(job.num_nodes)]
        launch += ["--machine-rank", str(job.node), "--dist-url", dist_url]
        restarted = os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")
        return [sys.executable, self.tool, *(self.resumed_args() if restarted else self.args), *launch]

    def __call__(self) -> None:
        command = self.command()
        print(f"Running {subprocess.list2cmdline(command)}", flush=True)
        # Its own process group: a stop reaches the tool's workers and data loaders too.
        self.process = subprocess.Popen(command, cwd=self.cwd, start_new_session=True)
        try:
            code = self.process.wait()
        finally:  # also when submitit ends the task after a checkpoint: the tool ends first
            self.stop()
        if code != 0:
            raise ToolFailed(f"{os.path.basename(self.tool)} exited with {code}: its log above says why")

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        """Stop the tool as Ctrl-C would (SIGTERM to its process group, unless :meth:`checkpoint`
        did), and kill it if it has not ended within :data:`STOP_GRACE_SECONDS`."""
        if self.process is None or self.process.poll() is not None:
            return
        if not self.stopping:
            self._signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait()

    def checkpoint(self) -> DelayedSubmission:
        """Called by submitit on preemption or timeout (in a signal handler, which must not wait
        for the tool: :meth:`__call__` does, once submitit ends the task): stop the tool, which
        keeps its last checkpoint or finished shards, and requeue the job with its resume
        option."""
        self._signal(signal.SIGTERM)
        self.stopping = True
        return DelayedSubmission(ToolJob(self.tool, self.resumed_args(), self.gpus_per_node, self.cwd))


def _check_command(tool: str, args: Sequence[str]) -> None:
    name = os.path.basename(tool)
    if name not in SUBMITTED_TOOLS:
        raise ValueError(f"{tool}: a job runs {' or '.join(f'tools/{t}' for t in SUBMITTED_TOOLS)}")
    if not os.path.isfile(tool):
        raise ValueError(f"{tool}: no such file")
    given = [a.split("=", 1)[0] for a in args if a.split("=", 1)[0] in LAUNCH_OPTIONS]
    if given:
        raise ValueError(
            f"{given[0]} is set for each node of the job (--nodes, --gpus-per-node): leave it out of the command"
        )


def submit_tool(tool: str, args: Sequence[str], job_dir: str, options: ClusterOptions, cluster: str = "slurm"):
    """Submit a job that runs ``tool`` (``tools/train_net.py`` or ``tools/predict.py``) with
    ``args`` on ``options.nodes`` nodes, requeued with its resume option when preempted or
    timed out; submitit's files and the logs go to ``job_dir`` (``%j``: the job id).

    Returns:
        the submitit job (``job.job_id``, ``job.paths.stdout``, ``job.result()``).

    Raises:
        ValueError: the command, the options or the cluster are wrong (one line).
    """
    _check_command(tool, args)
    problem = options.problem(cluster)
    if cluster not in CLUSTERS or problem:
        raise ValueError(problem or f"--cluster must be one of {', '.join(CLUSTERS)}, got {cluster}")
    try:
        executor = submitit.AutoExecutor(folder=job_dir, cluster=cluster)
    except RuntimeError as e:  # no sbatch/srun on this machine
        raise ValueError(f"--cluster {cluster}: {e} (--cluster local runs the job on this machine)") from None
    executor.update_parameters(**{k: v for k, v in options.executor_parameters().items() if v is not None})
    return executor.submit(ToolJob(os.path.abspath(tool), args, options.gpus_per_node, os.getcwd()))
