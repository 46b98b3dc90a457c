"""Running an exported file: a TorchScript module with PyTorch, an ONNX model with onnxruntime."""
from typing import Callable, List

import numpy as np
import torch

__all__ = ["load_exported"]


def load_exported(fmt: str, path: str) -> Callable[[torch.Tensor], List[np.ndarray]]:
    """The model exported to ``path`` in format ``fmt`` ("torchscript" or "onnx", see
    :data:`~gcnet.export.EXPORT_FORMATS`) as a function of its input tensor (named "image" in
    the ONNX file) that returns its outputs as numpy arrays, in the exported order."""
    if fmt == "torchscript":
        module = torch.jit.load(path)

        def run(example: torch.Tensor) -> List[np.ndarray]:
            with torch.no_grad():
                return [t.numpy() for t in module(example)]

        return run
    if fmt != "onnx":
        raise ValueError(f"load_exported: unknown format {fmt!r}; expected 'torchscript' or 'onnx'")
    import onnxruntime  # the "export" extra

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda example: session.run(None, {"image": example.numpy()})
