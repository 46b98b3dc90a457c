"""Warnings of our dependencies that say nothing to our users, filtered once when a tool
starts (before it imports them, since most are raised at import)."""

import logging
import warnings

__all__ = ["KNOWN_WARNINGS", "filter_known_warnings"]

# (category, start of the message) of Python warnings, as the `warnings` module matches them.
KNOWN_WARNINGS = (
    # fvcore and detectron2 script a few functions at import; PyTorch deprecated TorchScript.
    (FutureWarning, r"`torch\.jit\.\w+` is deprecated"),
    # iopath and detectron2's model zoo import pkg_resources.
    (UserWarning, "pkg_resources is deprecated"),
    # detectron2's create_ddp_model passes DistributedDataParallel's broadcast_buffers.
    (FutureWarning, "`broadcast_buffers` is deprecated"),
    # detectron2's anchor generator calls torch.meshgrid without `indexing`.
    (UserWarning, "torch.meshgrid: in an upcoming release"),
)
# (logger, start of the message) of log records: PyTorch's notes when detectron2 looks for CUDA
# on a CPU machine and when its modules are traced.
KNOWN_LOG_RECORDS = (
    ("torch.utils.cpp_extension", "No CUDA runtime is found"),
    ("torch.fx._symbolic_trace", "is_fx_tracing will return true"),
)


class _DropRecords(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def filter_known_warnings() -> None:
    """Silence :data:`KNOWN_WARNINGS` and :data:`KNOWN_LOG_RECORDS`; every other warning is
    shown as before."""
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, prefix in KNOWN_LOG_RECORDS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropRecords) and f.prefix == prefix for f in target.filters):
            target.addFilter(_DropRecords(prefix))
