"""TorchScript and ONNX export (gcnet.export, gcnet.apps.export_and_check, tools/export_model.py):
the exported models return what the eager ones do, at the traced size and, where the graph
allows, at others."""

import os

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from gcnet.apps import export_and_check
from gcnet.engine import load_config
from gcnet.export import eager_outputs, export_onnx, export_torchscript, load_exported, size_independent
from gcnet.modeling import build_gcnet_resnet

from ..helpers import CONFIGS, TINY_CONFIG, randomize_, run_tool

SEGMENTATION = CONFIGS / "Cityscapes-SemanticSegmentation" / "mmseg_gcnet_R_50_D8_512x1024_40k.py"


def run(fmt, path, image):
    return load_exported(fmt, str(path))(image)


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


SEGMENTATION_OPTS = [
    "train.init_checkpoint=",
    "model.inference.mode=whole",
    "model.sem_seg_head.channels=64",
    "dataloader.test.mapper.augmentations=[]",  # the sample at its size (the config fits it in 2048x1024)
]


def test_export_and_check(shared_data, tmp_path):
    lines = []
    ok = export_and_check(
        load_config(str(SEGMENTATION), SEGMENTATION_OPTS),
        formats=["onnx"],
        output=str(tmp_path),
        what="model",
        tolerance=1e-3,
        sample_image=str(shared_data / "camvid" / "val" / "0016E5_07959.png"),
        report=lines.append,
    )
    assert ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "model.onnx"]
    assert lines[0] == "Exporting with 59 BatchNorms folded into their convs"
    assert lines[1].startswith(f"Wrote {tmp_path / 'model.onnx'} (") and lines[1].endswith(" s CPU)")
    assert lines[2].startswith("onnx: largest difference from the eager model on the traced input: ")
    assert "BatchNormalization" not in {node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["sem_seg"]
    exported_cfg = LazyConfig.load(str(tmp_path / "config.yaml"))  # the config of the export, --opts included
    assert exported_cfg.model.sem_seg_head.channels == 64 and exported_cfg.model.inference.mode == "whole"


UNSUPPORTED_MODEL_CONFIG = """
from detectron2.config import LazyCall as L
from torch import nn

model = L(nn.Identity)()
train = dict(init_checkpoint="")
"""


@pytest.mark.parametrize(
    "config,options,message",
    [
        (
            "{tmp}/identity.py",
            dict(what="model"),
            "--export model supports detectors (GeneralizedRCNN) and semantic segmentation models "
            "(ContextSegmentor), got Identity; use --export backbone",
        ),
        ("{seg}", dict(sample_image="{tmp}/missing.jpg"), "--sample-image {tmp}/missing.jpg: no such file"),
        ("{coco}", dict(check_images=["{tmp}/missing.jpg"]), "--check-images {tmp}/missing.jpg: no such image file"),
        (
            "{seg}",
            dict(check_images=["{seg}"]),
            "--check-images compares detectors only; other exports are checked on the traced input",
        ),
    ],
)
def test_export_errors(config, options, message, tmp_path, monkeypatch):
    """One line, before the model is built, nothing written."""
    import gcnet.apps.export_check

    monkeypatch.setattr(gcnet.apps.export_check, "build_model", lambda *a: pytest.fail("the model was built"))
    (tmp_path / "identity.py").write_text(UNSUPPORTED_MODEL_CONFIG)
    fill = dict(
        tmp=tmp_path, seg=SEGMENTATION, coco=CONFIGS / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_gc_r16_1x.py"
    )
    options = {
        k: [a.format(**fill) for a in v] if isinstance(v, list) else v.format(**fill) for k, v in options.items()
    }
    options = dict(dict(formats=["onnx"], what="model", tolerance=1e-3, input_size=(64, 64)), **options)
    with pytest.raises(ValueError) as error:
        export_and_check(load_config(config.format(**fill)), output=str(tmp_path / "out"), **options)
    assert str(error.value) == message.format(**fill)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=f"^{tmp_path / 'missing.py'}: no such config file"):
        load_config(str(tmp_path / "missing.py"))


def test_an_output_that_cannot_be_written_is_refused_before_the_model_is_built(tmp_path, monkeypatch):
    """A read-only folder, or a file in the folder's path: refused in one line that names it,
    before the (long) build and trace; nothing is written."""
    import gcnet.apps.export_check

    monkeypatch.setattr(gcnet.apps.export_check, "build_model", lambda *a: pytest.fail("the model was built"))
    (tmp_path / "file.txt").write_text("x")
    cfg = load_config(TINY_CONFIG)
    for output, message in [
        ("/sys", "--output /sys: the folder is not writable (Permission denied); choose another"),
        (f"{tmp_path}/file.txt/out", f"--output {tmp_path}/file.txt/out: cannot create the folder (Not a directory)"),
    ]:
        with pytest.raises(ValueError) as error:
            export_and_check(cfg, formats=["onnx"], output=output, what="model", tolerance=1e-3, input_size=(64, 64))
        assert str(error.value) == message
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]
    result = run_tool("tools/export_model.py", "--config-file", TINY_CONFIG, "--format", "onnx", "--output", "/sys")
    assert (
        result.returncode == 2
        and result.stderr
        == "export_model: --output /sys: the folder is not writable (Permission denied); choose another\n"
    )
