"""Running an exported file: a TorchScript module with PyTorch, an ONNX model with onnxruntime.

onnxruntime runs with every graph optimisation (``ORT_ENABLE_ALL``: constant folding, the fusion
of convolutions with their bias, activation and residual add, and its blocked NCHWc layout for
convolutions), one model call at a time, and as many intra-op threads as PyTorch uses
(``torch.get_num_threads()``, unless ``threads`` says otherwise), so that an export and the
eager model are compared on the same cores. Left to itself, onnxruntime takes one thread per
physical core and spins them between operators.
"""

from typing import Callable, List, Optional

import numpy as np
import torch

__all__ = ["load_exported", "onnx_session_options"]


def onnx_session_options(threads: Optional[int] = None):
    """onnxruntime's ``SessionOptions`` for an exported model (see the module docstring):
    ``threads`` intra-op threads (default: ``torch.get_num_threads()``), sequential execution."""
    import onnxruntime  # the "export" extra

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return options


def load_exported(fmt: str, path: str, threads: Optional[int] = None) -> Callable[[torch.Tensor], List[np.ndarray]]:
    """The model exported to ``path`` in format ``fmt`` ("torchscript" or "onnx", see
    :data:`~gcnet.export.EXPORT_FORMATS`) as a function of its input tensor (named "image" in
    the ONNX file) that returns its outputs as numpy arrays, in the exported order. An ONNX
    model runs on ``threads`` intra-op threads (:func:`onnx_session_options`)."""
    if fmt == "torchscript":
        module = torch.jit.load(path)

        def run(example: torch.Tensor) -> List[np.ndarray]:
            with torch.no_grad():
                return [t.numpy() for t in module(example)]

        return run
    if fmt != "onnx":
        raise ValueError(f"load_exported: unknown format {fmt!r}; expected 'torchscript' or 'onnx'")
    import onnxruntime  # the "export" extra

    session = onnxruntime.InferenceSession(path, onnx_session_options(threads), providers=["CPUExecutionProvider"])
    return lambda example: session.run(None, {"image": example.numpy()})
