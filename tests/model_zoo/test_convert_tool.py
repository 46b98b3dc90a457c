"""tools/convert_checkpoint.py: converts, checks the fit against a config, writes nothing on failure."""
import pytest
import torch

from ..helpers import CONFIGS, load_tool, run_tool
from .upstream_layouts import mmdet_checkpoint

CONFIG = CONFIGS / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_gc_r16_1x.py"


@pytest.fixture(scope="module")
def convert_main():
    return load_tool("convert_checkpoint").main


@pytest.fixture(scope="module")
def upstream_r16(tmp_path_factory):
    path = tmp_path_factory.mktemp("upstream") / "mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco.pth"
    torch.save(mmdet_checkpoint("v2", depth=50, gc_ratio=1 / 16), path)
    return path


def test_converts_and_fits_the_config(convert_main, upstream_r16, tmp_path):
    out = tmp_path / "converted.pth"
    assert convert_main(["--converter", "mmdet", str(upstream_r16), str(out), "--config", str(CONFIG)]) == 0
    converted = torch.load(out, weights_only=True)
    upstream = torch.load(upstream_r16, weights_only=True)["state_dict"]
    torch.testing.assert_close(
        converted["model"]["backbone.bottom_up.res5.2.context_block.channel_add_conv.0.weight"],
        upstream["backbone.layer4.2.context_block.channel_add_conv.0.weight"],
    )
    assert not list(tmp_path.glob("*.partial"))


def test_a_checkpoint_that_does_not_fit_the_config_writes_nothing(convert_main, upstream_r16, tmp_path, capsys):
    out = tmp_path / "converted.pth"
    out.write_bytes(b"previous result")
    r4 = CONFIG.with_name("mask_rcnn_R_50_FPN_gc_r4_1x.py")
    assert convert_main(["--converter", "mmdet", str(upstream_r16), str(out), "--config", str(r4)]) == 1
    err = capsys.readouterr().err
    assert f"does not fit {r4}" in err and "shape of backbone.bottom_up.res3.0.context_block.channel_add_conv.0.weight" in err
    assert out.read_bytes() == b"previous result"

    # The same config with the checkpoint's ratio, given as an override, fits.
    args = ["--converter", "mmdet", str(upstream_r16), str(out), "--config", str(r4), "model.backbone.bottom_up.gc.ratio=0.0625"]
    assert convert_main(args) == 0
    assert set(torch.load(out, weights_only=True)["model"]) > {"backbone.bottom_up.res3.0.context_block.conv_mask.weight"}


def test_unmatched_upstream_keys_are_listed(convert_main, upstream_r16, tmp_path, capsys):
    checkpoint = torch.load(upstream_r16, weights_only=True)
    checkpoint["state_dict"]["roi_head.extra_head.weight"] = torch.zeros(3, 5)
    bad = tmp_path / "extra.pth"
    torch.save(checkpoint, bad)
    out = tmp_path / "converted.pth"
    assert convert_main(["--converter", "mmdet", str(bad), str(out)]) == 1
    assert "1 upstream keys could not be converted: roi_head.extra_head.weight [3, 5]" in capsys.readouterr().err
    assert not out.exists()


def test_command_line(upstream_r16, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(upstream_r16.read_bytes()[:1000])
    result = run_tool("tools/convert_checkpoint.py", "--converter", "mmdet", truncated, tmp_path / "out.pth")
    assert result.returncode == 1
    assert f"Cannot load checkpoint {truncated}" in result.stderr
    assert not (tmp_path / "out.pth").exists()


def test_missing_input_is_named_as_missing(convert_main, tmp_path, capsys):
    assert convert_main(["--converter", "mmdet", str(tmp_path / "nowhere.pth"), str(tmp_path / "out.pth")]) == 1
    assert capsys.readouterr().err == f"convert_checkpoint: {tmp_path / 'nowhere.pth'}: no such file\n"
    assert not (tmp_path / "out.pth").exists()
