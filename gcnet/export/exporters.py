"""TorchScript and ONNX export of GC-ResNet backbones and semantic segmentation models.

Both formats go through detectron2's ``TracingAdapter``, which flattens the model's inputs and
outputs into tensors (TorchScript by tracing, ONNX by ``torch.export``):

* a backbone takes one (N, 3, H, W) normalized tensor and returns its feature maps, sorted
  by name (the order in which ``TracingAdapter`` flattens a dict);
* a :class:`~gcnet.modeling.ContextSegmentor` takes one (3, H, W) image in the model's input
  format (pixel values, as in ``{"image": ...}``) and returns its (K, H, W) class
  probabilities, with the model's own inference (whole image or sliding window, test-time
  augmentation).

The graph accepts other input sizes than the traced one where the computation does not
depend on the size (:func:`size_independent`); otherwise it is fixed to the traced size.
"""
import contextlib
import os
import warnings
from typing import Iterator, List, Tuple

import torch
from torch import nn
from torch.export import Dim

from detectron2.export import TracingAdapter
from detectron2.modeling import Backbone

from gcnet.modeling import ContextSegmentor
from gcnet.utils.file_io import atomic_path, atomic_write

__all__ = [
    "EXPORT_FORMATS",
    "tracing_adapter",
    "size_independent",
    "output_names",
    "eager_outputs",
    "export_torchscript",
    "export_onnx",
]

EXPORT_FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 19  # DeformConv is an ONNX operator from opset 19 (LayerNormalization from 17)


def tracing_adapter(model: nn.Module, example: torch.Tensor) -> TracingAdapter:
    """``model`` (in eval mode) wrapped for tracing with one example input (see the module
    docstring for what the input and outputs are)."""
    model.eval()
    if isinstance(model, ContextSegmentor):
        if example.dim() != 3:
            raise ValueError(f"A segmentation model exports with a (3, H, W) image, got shape {list(example.shape)}")
        adapter = TracingAdapter(model, ([{"image": example}],), inference_func=lambda m, inputs: m(inputs)[0]["sem_seg"])
    elif isinstance(model, Backbone):
        if example.dim() != 4:
            raise ValueError(f"A backbone exports with an (N, 3, H, W) tensor, got shape {list(example.shape)}")
        adapter = TracingAdapter(model, example)
    else:
        raise ValueError(f"Export supports detectron2 backbones and ContextSegmentor models, got {type(model).__name__}")
    return adapter.eval()


def size_independent(model: nn.Module) -> bool:
    """Whether the traced graph holds for every input size: backbones, and segmentation models
    that predict the whole image at one scale without flipping."""
    if isinstance(model, ContextSegmentor):
        return model.mode == "whole" and tuple(model.scales) == (1.0,) and not model.flip
    return True


def output_names(model: nn.Module) -> List[str]:
    """The names of the exported outputs: the backbone's features (sorted, as they are
    returned), or "sem_seg"."""
    if isinstance(model, ContextSegmentor):
        return ["sem_seg"]
    return sorted(model.output_shape())


def eager_outputs(model: nn.Module, example: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """What an export of ``model`` traced on ``example`` should return for it, computed by
    ``model`` itself: its outputs on ``example``, in the exported order."""
    adapter = tracing_adapter(model, example)
    with torch.no_grad():
        return tuple(adapter(*adapter.flattened_inputs))


def _prepare_output(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


@contextlib.contextmanager
def _tracing() -> Iterator[None]:
    """No gradients, and no TracerWarnings: which parts of a graph hold for other sizes is
    what :func:`size_independent` says."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str) -> torch.jit.ScriptModule:
    """Trace ``model`` on ``example`` and save the TorchScript module to ``path`` (atomically).
    The module returns a tuple of tensors (:func:`output_names`)."""
    adapter = tracing_adapter(model, example)
    with _tracing():
        traced = torch.jit.trace(adapter, adapter.flattened_inputs)
    _prepare_output(path)
    atomic_write(path, lambda f: torch.jit.save(traced, f))
    return traced


def export_onnx(model: nn.Module, example: torch.Tensor, path: str) -> Tuple[str, ...]:
    """Export ``model`` traced on ``example`` to an ONNX file at ``path`` (atomically) with
    PyTorch's ``torch.export``-based exporter: the input "image" and the outputs of
    :func:`output_names`; batch, height and width are dynamic when :func:`size_independent`.
    Returns the output names."""
    adapter = tracing_adapter(model, example)
    outputs = tuple(output_names(model))
    dynamic_shapes = None
    if size_independent(model):
        spatial = {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")} if example.dim() == 4 else {1: Dim("height"), 2: Dim("width")}
        dynamic_shapes = ((spatial,),)  # TracingAdapter.forward(*flattened_inputs)
    _prepare_output(path)
    with _tracing():
        program = torch.onnx.export(
            adapter,
            adapter.flattened_inputs,
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=list(outputs),
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)
    return outputs
