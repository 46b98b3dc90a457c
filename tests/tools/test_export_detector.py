"""Whole-detector export (gcnet.export.detection, tools/export_model.py): a GC Mask R-CNN, traced
once on a balloon image, to TorchScript and ONNX; onnxruntime on the balloon validation images,
each at its own size, gives the eager model's boxes, scores, classes and masks."""

import math
import os
import re

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances

from gcnet.data import read_image
from gcnet.engine import TestPreprocessor as Preprocessor
from gcnet.export import (
    DetectionTolerance,
    compare_detections,
    detections_from_outputs,
    eager_outputs,
    export_onnx_from_trace,
    load_exported,
)
from gcnet.export.detection import DETECTION_OUTPUTS
from gcnet.layers import ContextBlock
from gcnet.modeling import build_gcnet_resnet

from ..helpers import REPO_ROOT, TINY_CONFIG, randomize_, run_tool

VAL_IMAGES = 4  # balloon validation images checked, each at its own size
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.ts"}


def tiny_detector():
    """The tests' GC-ResNet-18 Mask R-CNN with GC blocks that act and confident masks (random
    weights in the GC blocks and the mask predictor, whose initial outputs are all near 0.5)."""
    cfg = LazyConfig.load(TINY_CONFIG)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    for i, block in enumerate(m for m in model.modules() if isinstance(m, ContextBlock)):
        randomize_(block, seed=i, scale=0.05)
    randomize_(model.roi_heads.mask_head.predictor, scale=0.5)
    return cfg, model


@pytest.fixture(scope="module")
def exported(shared_data, tmp_path_factory):
    """tools/export_model.py run once: both formats from one trace on the first balloon
    validation image, checked by the tool on the next ones."""
    folder = tmp_path_factory.mktemp("detector")
    cfg, model = tiny_detector()
    torch.save({"model": model.state_dict()}, folder / "weights.pth")
    images = sorted((shared_data / "balloon" / "val").glob("*.jpg"))[:VAL_IMAGES]
    result = run_tool(
        "tools/export_model.py",
        "--config-file",
        TINY_CONFIG,
        "--format",
        "torchscript",
        "onnx",
        "--output",
        folder / "out",
        "--sample-image",
        images[0],
        "--check-images",
        *images[1:],
        "--opts",
        f"train.init_checkpoint={folder / 'weights.pth'}",
    )
    return dict(
        returncode=result.returncode,
        stdout=result.stdout,
        stderr=result.stderr,
        folder=folder / "out",
        cfg=cfg,
        model=model,
        images=images,
    )


def test_tool_exports_both_formats_and_reports_matches(exported):
    assert exported["returncode"] == 0, exported["stdout"] + exported["stderr"][-3000:]
    lines = exported["stdout"].splitlines()
    assert lines[0] == "Exporting with 20 BatchNorms folded into their convs"
    assert lines[1].startswith("Traced the model on a 3x160x") and [line.split(" (")[0] for line in lines[2:4]] == [
        f"Wrote {exported['folder'] / 'model.ts'}",
        f"Wrote {exported['folder'] / 'model.onnx'}",
    ]
    checks = lines[4:]
    assert len(checks) == 2 * VAL_IMAGES
    for fmt, path, line in zip(
        ["torchscript", "onnx"] * VAL_IMAGES, [p for p in exported["images"] for _ in range(2)], checks
    ):
        assert line.startswith(f"{fmt} on {path} (") and ": match: 100/100 detections paired; largest |Δbox| " in line
    assert {p.name for p in exported["folder"].iterdir()} == {"model.ts", "model.onnx", "config.yaml"}
    session = onnxruntime.InferenceSession(str(exported["folder"] / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].shape == [3, "height", "width"]  # dynamic input size
    assert [o.name for o in session.get_outputs()] == list(DETECTION_OUTPUTS)


def test_exports_carry_the_folded_weights(exported):
    """No BatchNorm left in either file; the convs that had one now have its bias."""
    operators = {node.op_type for node in onnx.load(str(exported["folder"] / "model.onnx")).graph.node}
    assert "Conv" in operators and "BatchNormalization" not in operators
    graph = str(torch.jit.load(str(exported["folder"] / "model.ts")).inlined_graph)
    assert "aten::_convolution" in graph and "aten::batch_norm" not in graph
    stem = torch.jit.trace(exported["model"].backbone.bottom_up.stem, torch.zeros(1, 3, 64, 64))
    assert "aten::batch_norm" in str(stem.inlined_graph)  # what an unfolded export holds


@pytest.fixture(scope="module")
def eager_results(exported):
    """Per validation image: the model input, the model's own postprocessed detections
    (detectron2's inference), and the per-box mask probabilities of the traced inference."""
    model = exported["model"]
    preprocess = Preprocessor(exported["cfg"])
    results = []
    for path in exported["images"]:
        item = preprocess(read_image(str(path), format="BGR"))
        with torch.no_grad():
            instances = model([item])[0]["instances"]
        roi_masks = eager_outputs(model, item["image"])[DETECTION_OUTPUTS.index("pred_masks")]
        results.append((item, instances, roi_masks))
    return results


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_detections_match_the_eager_model_on_balloon(exported, eager_results, fmt):
    """Every validation image, at its own size: the exported model's detections, postprocessed
    by detections_from_outputs, match detectron2's own output (DetectionTolerance), with
    pasted masks of IoU >= 0.99."""
    run = load_exported(fmt, str(exported["folder"] / FILE_NAMES[fmt]))
    for item, expected, roi_masks in eager_results:
        outputs = run(item["image"])
        found = detections_from_outputs(outputs, DETECTION_OUTPUTS, item["height"], item["width"])
        comparison = compare_detections(
            expected, found, roi_masks, torch.as_tensor(outputs[DETECTION_OUTPUTS.index("pred_masks")])
        )
        assert comparison.matches, comparison.summary()
        assert len(found) == 100 and comparison.min_mask_iou >= 0.99, comparison.summary()
        assert found.pred_masks.shape == (100, item["height"], item["width"]) and found.pred_masks.any(dim=(1, 2)).all()
    assert len({tuple(item["image"].shape) for item, _, _ in eager_results}) >= 3  # the traced size and others


def readme_onnx_snippet() -> str:
    """The README's lines that run an exported detector with onnxruntime."""
    readme = (REPO_ROOT / "README.md").read_text()
    return re.search(r"with\nonnxruntime:\n\n```python\n(.*?)```", readme, re.DOTALL).group(1)


def test_readme_onnx_snippet_gives_the_eager_detections(exported, eager_results, tmp_path, monkeypatch):
    """The README's snippet as written, where exported/ is this export and photo.jpg a balloon
    image: the input is made by the exported config (the tiny model's 160-pixel resize, not
    the R-50 configs' 800), and the instances are the eager model's."""
    (tmp_path / "exported").symlink_to(exported["folder"], target_is_directory=True)
    (tmp_path / "photo.jpg").symlink_to(exported["images"][1])
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_onnx_snippet(), "README.md", "exec"), namespace)
    item, expected, _ = eager_results[1]
    assert namespace["inputs"]["image"].shape == item["image"].shape and min(item["image"].shape[1:]) == 160
    comparison = compare_detections(expected, namespace["instances"])
    assert comparison.matches and comparison.paired == len(expected) == 100, comparison.summary()
    assert sorted(os.listdir(tmp_path)) == ["exported", "photo.jpg"]  # it writes nothing


def detections(boxes, scores, classes, masks=None):
    instances = Instances(
        (100, 100),
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
        scores=torch.tensor(scores),
        pred_classes=torch.tensor(classes),
    )
    if masks is not None:
        instances.pred_masks = masks
    return instances


def test_matching_rule():
    """Pairs by class, box and score tolerance, largest IoU first; counts, classes, boxes,
    scores and mask probabilities out of tolerance (or NaN) fail the match."""
    tol = DetectionTolerance()
    boxes = [[10, 10, 50, 50], [12, 10, 52, 50], [60, 60, 90, 95]]
    eager = detections(boxes, [0.9, 0.8, 0.7], [0, 0, 1])
    roi = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    # the same detections, reordered and moved by less than the tolerance
    moved = detections([[b + 0.05 for b in boxes[i]] for i in (2, 0, 1)], [0.7 + 5e-5, 0.9, 0.8], [1, 0, 0])
    comparison = compare_detections(eager, moved, roi, roi[[2, 0, 1]], tol)
    assert comparison.matches and comparison.paired == 3 and math.isclose(comparison.max_box_px, 0.05, rel_tol=1e-4)
    assert not compare_detections(eager, moved, roi, roi[[2, 0, 1]] + 2e-3, tol).matches
    assert not compare_detections(eager, moved, roi, roi[[2, 0, 1]] * float("nan"), tol).matches
    for changed in (
        detections(boxes, [0.9, 0.8, 0.7], [0, 0, 0]),  # a class
        detections([boxes[0], boxes[1], [60, 60, 90, 95.2]], [0.9, 0.8, 0.7], [0, 0, 1]),  # a box by 0.2 px
        detections(boxes, [0.9, 0.8, 0.7002], [0, 0, 1]),  # a score by 2e-4
        detections(boxes[:2], [0.9, 0.8], [0, 0]),  # one fewer
    ):
        comparison = compare_detections(eager, changed, tolerance=tol)
        assert not comparison.matches and "unpaired" in comparison.summary()


class Res5(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, image):
        return self.backbone(image[None])["res5"]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_convs_export_to_onnx_deform_conv(modulated, tmp_path):
    """DCN (v1 and v2) in a detector's ONNX file: the exporter of traces writes ONNX DeformConv
    (opset 19), which onnxruntime runs as torchvision does, at the traced size and another."""
    torch.manual_seed(0)
    model = build_gcnet_resnet(
        50, norm="BN", deform_stages=["res5"], deform_modulated=modulated, out_features=["res5"], gc_stages=["res5"]
    )
    randomize_(model, scale=0.05).eval()  # offsets that move the samples
    x = torch.randn(3, 64, 96)
    with torch.no_grad():
        traced = torch.jit.trace(Res5(model), x)
    export_onnx_from_trace(traced, x, str(tmp_path / "dcn.onnx"), ["res5"])
    assert "DeformConv" in {node.op_type for node in onnx.load(str(tmp_path / "dcn.onnx")).graph.node}
    session = onnxruntime.InferenceSession(str(tmp_path / "dcn.onnx"), providers=["CPUExecutionProvider"])
    for image in (x, torch.randn(3, 96, 64)):
        with torch.no_grad():
            expected = model(image[None])["res5"].numpy()
        np.testing.assert_allclose(session.run(None, {"image": image.numpy()})[0], expected, rtol=1e-4, atol=1e-4)
