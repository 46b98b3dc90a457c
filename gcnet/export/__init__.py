"""TorchScript and ONNX export of GC-ResNet backbones, semantic segmentation models and
detectors (Mask R-CNN), and the check of an exported detector against the eager model."""

from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .detection import (  # noqa: E402
    DetectionComparison,
    DetectionTolerance,
    compare_detections,
    detections_from_outputs,
)
from .exporters import (  # noqa: E402
    EXPORT_FORMATS,
    eager_outputs,
    export_onnx,
    export_onnx_from_trace,
    export_torchscript,
    output_names,
    size_independent,
    trace_model,
    tracing_adapter,
)
from .runtime import load_exported, onnx_session_options  # noqa: E402
