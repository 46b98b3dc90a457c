"""Without network access, every tool that would download something stops with one line that
names the URL, the reason and the way out for that tool, never a traceback, and with nothing
of our dependencies printed before it (deprecation warnings, progress bars, their own failure
lines).

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
        "tools/train_net.py",
        "--config-file",
        "configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_balloon.py",
        f"train.output_dir={tmp_path / 'out'}",
        env=dict(offline, DETECTRON2_DATASETS=str(datasets_root)),
    )
    assert_one_line(
        result,
        "train_net",
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/torchvision/R-50.pkl",
        "pass its path (train.init_checkpoint=/path/to/R-50.pkl); "
        'to train without these weights: train.init_checkpoint="" with a lower optimizer.lr '
        "(random weights diverge at fine-tuning rates)",
    )


ZOO_MODEL = "mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco"
ZOO_FILE = "mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco_20200515_211915-187da160.pth"
ZOO_URL = f"https://download.openmmlab.com/mmdetection/v2.0/gcnet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco/{ZOO_FILE}"


def test_demo_without_network(offline, shared_data, tmp_path):
    result = run_tool(
        "tools/demo.py",
        "--model",
        ZOO_MODEL,
        "--input",
        shared_data / "demo" / "park_bench.jpg",
        "--output",
        tmp_path / "out",
        env=offline,
    )
    way_out = f"on another machine and run: python -m gcnet.model_zoo download {ZOO_MODEL} --file /path/to/{ZOO_FILE}"
    assert_one_line(result, "demo", ZOO_URL, way_out)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_fine_tuning_from_the_zoo_without_network(offline, shared_data, tmp_path):
    """README "Train on your own dataset": the zoo weights, or none (train.init_checkpoint="")."""
    balloon = shared_data / "balloon"
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        "configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_finetune.py",
        f"dataset.train.json_file={balloon / 'annotations' / 'balloon_instances_train.json'}",
        f"dataset.train.image_root={balloon / 'train'}",
        f"dataset.val.json_file={balloon / 'annotations' / 'balloon_instances_val.json'}",
        f"dataset.val.image_root={balloon / 'val'}",
        f"train.output_dir={tmp_path / 'out'}",
        env=offline,
    )
    way_out = (
        f"python -m gcnet.model_zoo download {ZOO_MODEL} --file /path/to/{ZOO_FILE}; "
        'to train without these weights: train.init_checkpoint="" with a lower optimizer.lr '
        "(random weights diverge at fine-tuning rates)"
    )
    assert_one_line(result, "train_net", ZOO_URL, way_out)


def test_model_zoo_without_network(offline):
    """Nothing before our line: no deprecation warning of PyTorch, no progress bar, no line of
    iopath's."""
    name = "ImageNetPretrained/torchvision/R-101"
    result = run_tool("-m", "gcnet.model_zoo", "download", name, env=dict(offline, PYTHONWARNINGS="default"))
    assert result.returncode == 2 and result.stdout == ""
    url = "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth"
    way_out = f"python -m gcnet.model_zoo download {name} --file /path/to/resnet101-5d3b4d8f.pth"
    assert_one_line(result, "gcnet.model_zoo", url, way_out)
    assert result.stderr.count("\n") == 1, result.stderr


def test_model_zoo_takes_a_copy_made_elsewhere(offline, tmp_path):
    """The way out offline: a local copy of the upstream file, checked against the digest in its
    name, is taken instead of a download."""
    copy = tmp_path / "resnet101-5d3b4d8f.pth"
    copy.write_bytes(b"not the ResNet-101 of torchvision")
    result = run_tool(
        "-m", "gcnet.model_zoo", "download", "ImageNetPretrained/torchvision/R-101", "--file", copy, env=offline
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"gcnet.model_zoo: {copy} has sha256 ")
    assert result.stderr.strip().endswith(
        ", expected 5d3b4d8f...: it is not the file of https://download.pytorch.org/models/resnet101-5d3b4d8f.pth"
    )
    assert not list((tmp_path / "cache").rglob("*.pth"))


def test_prepare_balloon_without_network(offline, tmp_path):
    env = dict(offline, PYTHONWARNINGS="default")
    result = run_tool("tools/prepare_datasets.py", "balloon", "--root", tmp_path / "datasets", env=env)
    assert result.returncode == 1 and result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert_one_line(
        result,
        "prepare_datasets",
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.1/balloon_dataset.zip",
        "python tools/prepare_datasets.py balloon --url /path/to/balloon_dataset.zip",
    )
    assert list((tmp_path / "datasets").iterdir()) == []
