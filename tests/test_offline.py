"""Without network access, every tool that would download something stops with one line that
names the URL, the reason and the way out, never a traceback.

"No network" is a proxy on a closed loopback port, which every download goes through (urllib
reads https_proxy/http_proxy), and an empty download cache.
"""
import socket

import pytest

from .helpers import run_tool


@pytest.fixture
def offline(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    return {"https_proxy": closed, "http_proxy": closed, "no_proxy": "", "FVCORE_CACHE": str(tmp_path / "cache")}


def assert_one_line(result, prefix: str, url: str, way_out: str):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{prefix}: Could not download {url}: "), last
    assert "Connection refused" in last and way_out in last, last


def test_train_net_without_network(offline, datasets_root, tmp_path):
    result = run_tool(
        "tools/train_net.py", "--config-file", "configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py",
        f"train.output_dir={tmp_path / 'out'}",
        env=dict(offline, DETECTRON2_DATASETS=str(datasets_root)),
    )  # fmt: skip
    assert_one_line(
        result,
        "train_net",
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/torchvision/R-50.pkl",
        'pass its path (train.init_checkpoint=/path/to/R-50.pkl), or train from scratch with train.init_checkpoint=""',
    )


def test_demo_without_network(offline, shared_data, tmp_path):
    result = run_tool(
        "tools/demo.py", "--model", "mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco",
        "--input", shared_data / "demo" / "park_bench.jpg", "--output", tmp_path / "out",
        env=offline,
    )  # fmt: skip
    url = (
        "https://download.openmmlab.com/mmdetection/v2.0/gcnet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco/"
        "mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco_20200515_211915-187da160.pth"
    )
    assert_one_line(result, "demo", url, f"copy it to {tmp_path / 'cache' / 'gcnet' / 'downloads' / url.split('://')[1]}")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_model_zoo_without_network(offline):
    result = run_tool("-m", "gcnet.model_zoo", "download", "ImageNetPretrained/torchvision/R-101", env=offline)
    assert result.returncode == 2
    assert_one_line(result, "gcnet.model_zoo", "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth", "(its sha256 is checked on use)")


def test_prepare_balloon_without_network(offline, tmp_path):
    result = run_tool("tools/prepare_datasets.py", "balloon", "--root", tmp_path / "datasets", env=offline)
    assert result.returncode == 1
    assert_one_line(
        result,
        "prepare_datasets",
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.1/balloon_dataset.zip",
        "python tools/prepare_datasets.py balloon --url /path/to/balloon_dataset.zip",
    )
    assert list((tmp_path / "datasets").iterdir()) == []
