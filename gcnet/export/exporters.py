"""TorchScript and ONNX export of GC-ResNet backbones, semantic segmentation models and
detectors.

Both formats go through detectron2's ``TracingAdapter``, which flattens the model's inputs and
outputs into tensors (TorchScript by tracing; ONNX by ``torch.export``, or for detectors from
the TorchScript trace, see :mod:`gcnet.export.detection`):

* a backbone takes one (N, 3, H, W) normalized tensor and returns its feature maps, sorted
  by name (the order in which ``TracingAdapter`` flattens a dict);
* a :class:`~gcnet.modeling.ContextSegmentor` takes one (3, H, W) image in the model's input
  format (pixel values, as in ``{"image": ...}``) and returns its (K, H, W) class
  probabilities, with the model's own inference (whole image or sliding window, test-time
  augmentation);
* a detector (detectron2's ``GeneralizedRCNN``) takes one (3, H, W) image in the model's input
  format and returns its detections (:mod:`gcnet.export.detection`).

The graph accepts other input sizes than the traced one where the computation does not
depend on the size (:func:`size_independent`); otherwise it is fixed to the traced size.
"""

import contextlib
import os
import warnings
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.export import Dim

from detectron2.export import TracingAdapter
from detectron2.modeling import Backbone, GeneralizedRCNN

from gcnet.modeling import ContextSegmentor
from gcnet.utils.file_io import atomic_path, atomic_write

from .detection import detection_adapter, detection_output_names, register_onnx_deform_conv

__all__ = [
    "EXPORT_FORMATS",
    "tracing_adapter",
    "size_independent",
    "output_names",
    "eager_outputs",
    "trace_model",
    "export_torchscript",
    "export_onnx",
    "export_onnx_from_trace",
]

EXPORT_FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 19  # DeformConv is an ONNX operator from opset 19 (LayerNormalization from 17)


def tracing_adapter(model: nn.Module, example: torch.Tensor) -> TracingAdapter:
    """``model`` (in eval mode) wrapped for tracing with one example input (see the module
    docstring for what the input and outputs are)."""
    model.eval()
    if isinstance(model, GeneralizedRCNN):
        return detection_adapter(model, example)
    if isinstance(model, ContextSegmentor):
        if example.dim() != 3:
            raise ValueError(f"A segmentation model exports with a (3, H, W) image, got shape {list(example.shape)}")
        adapter = TracingAdapter(
            model, ([{"image": example}],), inference_func=lambda m, inputs: m(inputs)[0]["sem_seg"]
        )
    elif isinstance(model, Backbone):
        if example.dim() != 4:
            raise ValueError(f"A backbone exports with an (N, 3, H, W) tensor, got shape {list(example.shape)}")
        adapter = TracingAdapter(model, example)
    else:
        raise ValueError(
            f"Export supports detectron2 backbones, GeneralizedRCNN detectors and ContextSegmentor models, got "
            f"{type(model).__name__}"
        )
    return adapter.eval()


def size_independent(model: nn.Module) -> bool:
    """Whether the traced graph holds for every input size: backbones, detectors, and
    segmentation models that predict the whole image at one scale without flipping."""
    if isinstance(model, ContextSegmentor):
        return model.mode == "whole" and tuple(model.scales) == (1.0,) and not model.flip
    return True


def output_names(model: nn.Module) -> List[str]:
    """The names of the exported outputs: the backbone's features (sorted, as they are
    returned), "sem_seg", or a detector's fields (:func:`detection_output_names`)."""
    if isinstance(model, GeneralizedRCNN):
        return detection_output_names(model)
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


def trace_model(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``model`` traced on ``example`` through :func:`tracing_adapter`."""
    adapter = tracing_adapter(model, example)
    with _tracing():
        return torch.jit.trace(adapter, adapter.flattened_inputs)


def export_torchscript(
    model: nn.Module, example: torch.Tensor, path: str, traced: Optional[torch.jit.ScriptModule] = None
) -> torch.jit.ScriptModule:
    """Trace ``model`` on ``example`` (or take its trace ``traced``, from :func:`trace_model`)
    and save the TorchScript module to ``path`` (atomically). The module returns a tuple of
    tensors (:func:`output_names`)."""
    traced = traced or trace_model(model, example)
    _prepare_output(path)
    atomic_write(path, lambda f: torch.jit.save(traced, f))
    return traced


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: str, traced: Optional[torch.jit.ScriptModule] = None
) -> Tuple[str, ...]:
    """Export ``model`` traced on ``example`` to an ONNX file at ``path`` (atomically): the
    input "image" and the outputs of :func:`output_names`; batch (backbones), height and width
    are dynamic when :func:`size_independent`. Detectors go through their TorchScript trace
    (``traced``, from :func:`trace_model`, or a new one); the others through PyTorch's
    ``torch.export``-based exporter. Returns the output names."""
    outputs = tuple(output_names(model))
    _prepare_output(path)
    if isinstance(model, GeneralizedRCNN):
        export_onnx_from_trace(traced or trace_model(model, example), example, path, outputs)
        return outputs
    adapter = tracing_adapter(model, example)
    dynamic_shapes = None
    if size_independent(model):
        spatial = (
            {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}
            if example.dim() == 4
            else {1: Dim("height"), 2: Dim("width")}
        )
        dynamic_shapes = ((spatial,),)  # TracingAdapter.forward(*flattened_inputs)
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


def export_onnx_from_trace(
    traced: torch.jit.ScriptModule, example: torch.Tensor, path: str, outputs: Sequence[str]
) -> None:
    """A trace (of a detector, taking one (3, H, W) image) to an ONNX file at ``path``
    (atomically) with PyTorch's TorchScript-based exporter, as detectron2's deployment tools
    do: detectron2's proposal selection and RoI pooling index tensors by their values, which
    ``torch.export`` cannot follow. The input "image" has dynamic height and width; gcnet's
    deformable convs become ONNX ``DeformConv``."""
    register_onnx_deform_conv()
    with _tracing(), atomic_path(path) as tmp:
        # Deliberately the deprecated exporter; its notes on how it spells advanced indexing.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            traced,
            (example,),
            tmp,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=list(outputs),
            dynamic_axes={"image": {1: "height", 2: "width"}},
        )
