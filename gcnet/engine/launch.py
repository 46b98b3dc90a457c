"""detectron2's ``launch``, with a bounded rendezvous of the machines, workers that shut their
process group down when they finish, and a worker's death reported in one line."""

import datetime
import sys
import time
from urllib.parse import urlparse

import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT

from gcnet.utils.argument_parser import DEFAULT_RENDEZVOUS_TIMEOUT

from .interruption import Interrupted

__all__ = ["launch", "launch_from_args", "meet_machines", "RendezvousError", "WorkerFailed"]


class RendezvousError(RuntimeError):
    """The machines of a run did not all start, or not as ranks of one run."""


class WorkerFailed(RuntimeError):
    """A worker process died; ``exit_code`` is the one the launcher exits with, and ``said``
    whether the worker already said why (it ended with a message of its own)."""

    def __init__(self, message: str, exit_code: int, said: bool):
        super().__init__(message)
        self.exit_code = exit_code
        self.said = said


def _wait_for(store: dist.TCPStore, key: str, count: int, deadline: float) -> bool:
    while store.add(key, 0) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def meet_machines(dist_url: str, num_machines: int, machine_rank: int, timeout: float) -> None:
    """Wait at most ``timeout`` seconds for the ``num_machines`` machines of a run to start,
    each with its own ``machine_rank``, at the ``tcp://`` address of machine 0 (a TCPStore
    there, closed again before the run's own rendezvous). ``file://`` addresses are left to
    torch.

    Raises:
        RendezvousError: naming the address, what did not happen and what to do.
    """
    url = urlparse(dist_url)
    if url.scheme != "tcp" or num_machines == 1:
        return
    print(
        f"Machine {machine_rank} of {num_machines}: waiting up to {timeout:g} s for the others at {dist_url}",
        file=sys.stderr,
    )
    deadline = time.monotonic() + timeout
    try:
        store = dist.TCPStore(
            url.hostname,
            url.port,
            is_master=machine_rank == 0,
            timeout=datetime.timedelta(seconds=timeout),
            wait_for_workers=False,
        )
    except (RuntimeError, OSError) as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        if machine_rank == 0:
            raise RendezvousError(
                f"--dist-url {dist_url}: machine 0 cannot listen there ({reason}); the port is in use (another run, "
                f"or another machine started with --machine-rank 0) or {url.hostname} is not an address of this machine"
            ) from None
        raise RendezvousError(
            f"--dist-url {dist_url}: machine 0 did not answer within {timeout:g} s ({reason}); start it with "
            "--machine-rank 0, check the address, and that the port is open (--rendezvous-timeout waits longer)"
        ) from None
    problem = _meet(store, dist_url, num_machines, machine_rank, deadline, timeout)
    del store  # closed before the error is raised (its traceback would keep it listening)
    if problem:
        raise RendezvousError(problem)


def _meet(
    store: dist.TCPStore, dist_url: str, num_machines: int, machine_rank: int, deadline: float, timeout: float
) -> str:
    """Count this machine in and wait for the others: what went wrong, or ""."""
    if store.add(f"rank{machine_rank}", 1) > 1:
        return f"--machine-rank {machine_rank} was given to two machines: give each its own, 0..{num_machines - 1}"
    store.add("joined", 1)
    if not _wait_for(store, "joined", num_machines, deadline):
        joined = [str(r) for r in range(num_machines) if store.check([f"rank{r}"])]
        return (
            f"--dist-url {dist_url}: {len(joined)} of {num_machines} machines started within {timeout:g} s "
            f"(--machine-rank {', '.join(joined)}); start the same command on every machine, each with its "
            "--machine-rank, or give --rendezvous-timeout more time"
        )
    store.add("left", 1)
    if machine_rank == 0:  # the others have read the count before the store closes
        _wait_for(store, "left", num_machines, deadline)
    return ""


def _run_then_destroy_process_group(main_func, args):
    result = main_func(*args)
    # Without this, a gloo worker that exits while its peers still hold the process group can
    # abort ("terminate called without an active exception"): wait for all, then shut down.
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return result


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
    rendezvous_timeout: float = DEFAULT_RENDEZVOUS_TIMEOUT,
):
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of
    ``num_machines`` machines, as ``detectron2.engine.launch`` (NCCL with GPUs, gloo without),
    once the machines have met (:func:`meet_machines`, within ``rendezvous_timeout`` seconds).
    ``timeout`` bounds each collective.

    Raises:
        RendezvousError: the machines did not meet.
        WorkerFailed: a worker died; the others were stopped.
    """
    meet_machines(dist_url, num_machines, machine_rank, rendezvous_timeout)
    try:
        return d2_launch(
            _run_then_destroy_process_group,
            num_gpus_per_machine,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=(main_func, args),
            timeout=timeout,
        )
    except Interrupted as e:  # this process only waits for its workers, which say where they stopped
        if num_gpus_per_machine * num_machines == 1:
            raise
        raise WorkerFailed(f"interrupted by {e.signal_name}", e.exit_code, True) from None
    except mp.ProcessExitedException as e:
        if e.signal_name:
            raise WorkerFailed(
                f"worker process {e.error_index} was killed by {e.signal_name}; the others were stopped", 1, False
            ) from None
        raise WorkerFailed(f"worker process {e.error_index} exited with {e.exit_code}", e.exit_code, True) from None


def launch_from_args(main_func, args, extra_args=()):
    """:func:`launch` of ``main_func(args, *extra_args)`` with the launch options of ``args``
    (:func:`gcnet.utils.argument_parser.add_launch_arguments`)."""
    return launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args, *extra_args),
        timeout=datetime.timedelta(minutes=args.dist_timeout),
        rendezvous_timeout=args.rendezvous_timeout,
    )
