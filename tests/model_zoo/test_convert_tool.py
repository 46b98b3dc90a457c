"""gcnet.model_zoo.convert_checkpoint, and tools/convert_checkpoint.py that runs it: converts,
checks the fit against a config, writes nothing on failure."""

import pytest
import torch

from gcnet.model_zoo import convert_checkpoint

from ..helpers import CONFIGS, run_tool
from .upstream_layouts import mmdet_checkpoint

CONFIG = CONFIGS / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_gc_r16_1x.py"


@pytest.fixture(scope="module")
def upstream_r16(tmp_path_factory):
    path = tmp_path_factory.mktemp("upstream") / "mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco.pth"
    torch.save(mmdet_checkpoint("v2", depth=50, gc_ratio=1 / 16), path)
    return path


def test_converts_and_fits_the_config(upstream_r16, tmp_path):
    out = tmp_path / "converted.pth"
    convert_checkpoint("mmdet", str(upstream_r16), str(out), str(CONFIG))
    converted = torch.load(out, weights_only=True)
    upstream = torch.load(upstream_r16, weights_only=True)["state_dict"]
    torch.testing.assert_close(
        converted["model"]["backbone.bottom_up.res5.2.context_block.channel_add_conv.0.weight"],
        upstream["backbone.layer4.2.context_block.channel_add_conv.0.weight"],
    )
    assert not list(tmp_path.glob("*.partial"))


def test_a_checkpoint_that_does_not_fit_the_config_writes_nothing(upstream_r16, tmp_path):
    out = tmp_path / "converted.pth"
    out.write_bytes(b"previous result")
    r4 = CONFIG.with_name("mask_rcnn_R_50_FPN_gc_r4_1x.py")
    with pytest.raises(ValueError) as info:
        convert_checkpoint("mmdet", str(upstream_r16), str(out), str(r4))
    err = str(info.value)
    assert err.startswith(f"the result does not fit {r4}: ")
    assert "shape of backbone.bottom_up.res3.0.context_block.channel_add_conv.0.weight" in err
    assert out.read_bytes() == b"previous result"

    # The same config with the checkpoint's ratio, given as an override, fits.
    convert_checkpoint("mmdet", str(upstream_r16), str(out), str(r4), ["model.backbone.bottom_up.gc.ratio=0.0625"])
    assert set(torch.load(out, weights_only=True)["model"]) > {
        "backbone.bottom_up.res3.0.context_block.conv_mask.weight"
    }


def test_unmatched_upstream_keys_are_listed(upstream_r16, tmp_path):
    checkpoint = torch.load(upstream_r16, weights_only=True)
    checkpoint["state_dict"]["roi_head.extra_head.weight"] = torch.zeros(3, 5)
    bad = tmp_path / "extra.pth"
    torch.save(checkpoint, bad)
    out = tmp_path / "converted.pth"
    unconverted = r"1 upstream keys could not be converted: roi_head\.extra_head\.weight \[3, 5\]$"
    with pytest.raises(ValueError, match=unconverted):
        convert_checkpoint("mmdet", str(bad), str(out))
    assert not out.exists()


def test_command_line(upstream_r16, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(upstream_r16.read_bytes()[:1000])
    result = run_tool("tools/convert_checkpoint.py", "--converter", "mmdet", truncated, tmp_path / "out.pth")
    assert result.returncode == 1
    assert f"Cannot load checkpoint {truncated}" in result.stderr
    assert not (tmp_path / "out.pth").exists()


def test_missing_input_is_named_as_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        convert_checkpoint("mmdet", str(tmp_path / "nowhere.pth"), str(tmp_path / "out.pth"))
    assert str(info.value) == f"{tmp_path / 'nowhere.pth'}: no such file"
    assert not (tmp_path / "out.pth").exists()


def test_bad_arguments_are_named(upstream_r16, tmp_path):
    with pytest.raises(ValueError, match=r"^Unknown converter 'mmdet3'; known: deep_base_resnet, mmcv_resnet_v1c, "):
        convert_checkpoint("mmdet3", str(upstream_r16), str(tmp_path / "out.pth"))
    with pytest.raises(ValueError, match=r"^Overrides \['train.max_iter=1'\] need a config$"):
        convert_checkpoint("mmdet", str(upstream_r16), str(tmp_path / "out.pth"), "", ["train.max_iter=1"])
    assert not (tmp_path / "out.pth").exists()
