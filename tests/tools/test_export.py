"""TorchScript and ONNX export (gcnet.export, tools/export_model.py): the exported models
return what the eager ones do, at the traced size and, where the graph allows, at others."""
import numpy as np
import onnxruntime
import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from gcnet.export import eager_outputs, export_onnx, export_torchscript, size_independent
from gcnet.modeling import build_gcnet_resnet

from ..helpers import CONFIGS, TINY_CONFIG, load_tool, randomize_

SEGMENTATION = CONFIGS / "Cityscapes-SemanticSegmentation" / "mmseg_gcnet_R_50_D8_512x1024_40k.py"


def run(fmt, path, image):
    return load_tool("export_model").run_exported(fmt, str(path), image)


EXPORTERS = {"torchscript": export_torchscript, "onnx": export_onnx}


@pytest.fixture(scope="module")
def segmentor():
    cfg = LazyConfig.load(str(SEGMENTATION))
    cfg.model.sem_seg_head.channels = 64
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    randomize_(model.sem_seg_head, scale=0.05)
    return model


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_backbone_export_equals_eager(gc_resnet18, fmt, tmp_path):
    path = tmp_path / f"backbone.{fmt}"
    EXPORTERS[fmt](gc_resnet18, torch.randn(1, 3, 64, 96), str(path))
    for shape in [(1, 3, 64, 96), (2, 3, 96, 128)]:  # the traced size, and another batch and size
        x = torch.randn(shape)
        with torch.no_grad():
            expected = [t.numpy() for t in gc_resnet18(x).values()]
        exported = run(fmt, path, x)
        assert len(exported) == 4
        for e, o in zip(expected, exported):
            assert e.shape == o.shape
            np.testing.assert_allclose(o, e, rtol=1e-4, atol=1e-4)
    assert not gc_resnet18.training


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_backbone_outputs_come_sorted_by_name(fmt, tmp_path):
    """Exported feature maps come in name order (TracingAdapter's), whatever the order of
    out_features; eager_outputs and the ONNX output names follow it."""
    torch.manual_seed(0)
    model = build_gcnet_resnet(18, norm="BN", out_features=["stem", "res3"], gc_stages=["res3"]).eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / f"backbone.{fmt}"
    EXPORTERS[fmt](model, x, str(path))
    with torch.no_grad():
        features = model(x)
    expected = [features["res3"].numpy(), features["stem"].numpy()]
    exported = run(fmt, path, x)
    for e, eager, o in zip(expected, eager_outputs(model, x), exported):
        np.testing.assert_allclose(eager.numpy(), e, rtol=0, atol=0)
        np.testing.assert_allclose(o, e, rtol=1e-4, atol=1e-4)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["res3", "stem"]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_deformable_backbone_export_equals_eager(fmt, tmp_path):
    torch.manual_seed(0)
    model = build_gcnet_resnet(50, norm="BN", deform_stages=["res5"], out_features=["res5"], gc_stages=["res5"])
    randomize_(model, scale=0.05).eval()  # offsets that move the samples, GC blocks that act
    x = torch.randn(1, 3, 64, 64)
    EXPORTERS[fmt](model, x, str(tmp_path / "dcn"))
    with torch.no_grad():
        expected = model(x)["res5"].numpy()
    np.testing.assert_allclose(run(fmt, tmp_path / "dcn", x)[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_segmentation_export_equals_eager(segmentor, fmt, tmp_path):
    segmentor.mode = "whole"
    assert size_independent(segmentor)
    path = tmp_path / f"seg.{fmt}"
    g = torch.Generator().manual_seed(0)
    EXPORTERS[fmt](segmentor, torch.rand(3, 96, 128, generator=g) * 255, str(path))
    for shape in [(3, 96, 128), (3, 64, 160)]:
        image = torch.rand(shape, generator=g) * 255
        with torch.no_grad():
            expected = segmentor([{"image": image}])[0]["sem_seg"].numpy()
        (exported,) = run(fmt, path, image)
        assert exported.shape == (19, *shape[1:])
        np.testing.assert_allclose(exported, expected, rtol=1e-4, atol=1e-5)


def test_sliding_window_export_is_fixed_to_the_traced_size(segmentor, tmp_path):
    segmentor.mode, segmentor.crop_size, segmentor.stride = "slide", (64, 64), (48, 48)
    try:
        assert not size_independent(segmentor)
        image = torch.rand(3, 64, 112, generator=torch.Generator().manual_seed(1)) * 255  # two overlapping windows
        export_onnx(segmentor, image, str(tmp_path / "slide.onnx"))
        with torch.no_grad():
            expected = segmentor([{"image": image}])[0]["sem_seg"].numpy()
        np.testing.assert_allclose(run("onnx", tmp_path / "slide.onnx", image)[0], expected, rtol=1e-4, atol=1e-5)
        session = onnxruntime.InferenceSession(str(tmp_path / "slide.onnx"), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape == [3, 64, 112]
    finally:
        segmentor.mode = "whole"


def test_export_tool(shared_data, tmp_path, capsys):
    export_model = load_tool("export_model")
    args = [
        "--config-file", str(SEGMENTATION), "--format", "onnx", "--output", str(tmp_path),
        "--sample-image", str(shared_data / "camvid" / "val" / "0016E5_07959.png"),
        "--opts", "train.init_checkpoint=", "model.inference.mode=whole", "model.sem_seg_head.channels=64",
    ]  # fmt: skip
    assert export_model.main(args) == 0
    assert (tmp_path / "model.onnx").is_file()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Wrote {tmp_path / 'model.onnx'} (") and lines[0].endswith(" s CPU)")
    assert lines[1].startswith("onnx: largest difference from the eager model on the traced input: ")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["sem_seg"]


UNSUPPORTED_MODEL_CONFIG = """
from detectron2.config import LazyCall as L
from torch import nn

model = L(nn.Identity)()
train = dict(init_checkpoint="")
"""


@pytest.mark.parametrize("args,message", [
    (["--config-file", "{tmp}/identity.py", "--format", "onnx", "--export", "model"], "--export model supports detectors (GeneralizedRCNN) and semantic segmentation models (ContextSegmentor), got Identity; use --export backbone"),
    (["--config-file", "{tmp}/missing.py", "--format", "onnx"], "{tmp}/missing.py: no such config file"),
    (["--config-file", "{seg}", "--format", "onnx", "--sample-image", "{tmp}/missing.jpg"], "--sample-image {tmp}/missing.jpg: no such file"),
    (["--config-file", "{coco}", "--format", "onnx", "--check-images", "{tmp}/missing.jpg"], "--check-images {tmp}/missing.jpg: no such image file"),
    (["--config-file", "{seg}", "--format", "onnx", "--check-images", "{seg}", "--opts", "model.sem_seg_head.channels=64"], "--check-images compares detectors only; other exports are checked on the traced input"),
])  # fmt: skip
def test_export_tool_errors(args, message, tmp_path, capsys):
    (tmp_path / "identity.py").write_text(UNSUPPORTED_MODEL_CONFIG)
    fill = dict(tmp=tmp_path, seg=SEGMENTATION, coco=CONFIGS / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_gc_r16_1x.py")
    export_model = load_tool("export_model")
    assert export_model.main([a.format(**fill) for a in args] + ["--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"export_model: {message.format(**fill)}\n"
    assert not (tmp_path / "out").exists()
