"""TorchScript and ONNX export of GC-ResNet backbones and semantic segmentation models."""
from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .exporters import (  # noqa: E402
    EXPORT_FORMATS,
    eager_outputs,
    export_onnx,
    export_torchscript,
    output_names,
    size_independent,
    tracing_adapter,
)
