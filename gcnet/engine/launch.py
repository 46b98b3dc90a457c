"""detectron2's ``launch``, with workers that shut their process group down when they finish."""
import torch.distributed as dist

from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT

__all__ = ["launch"]


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
):
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of
    ``num_machines`` machines, as ``detectron2.engine.launch`` (NCCL with GPUs, gloo without).
    If a worker dies, the others are stopped and the launch raises."""
    return d2_launch(
        _run_then_destroy_process_group,
        num_gpus_per_machine,
        num_machines=num_machines,
        machine_rank=machine_rank,
        dist_url=dist_url,
        args=(main_func, args),
        timeout=timeout,
    )
