"""No entry point runs code from a file it did not decide to trust: a real malicious pickle,
which creates a marker file when unpickled, is served over loopback HTTP under every URL trick
and given to the API, train_net, the demo, the converter and a resume; the marker never
appears. Whether a .pkl may be read is decided on where its bytes came from, recorded when
they arrive, never on the path typed or where a file is cached; even a trusted one is read by
an unpickler that builds arrays and containers only."""

import json
import os
import pickle
import re
import shutil
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from gcnet.engine import GCNetCheckpointer
from gcnet.utils.download import DownloadError, sha256sum
from gcnet.utils.download_cache import RECORD_SUFFIX, cache_path, download_verified
from gcnet.utils.local_files import pickle_refusal
from gcnet.utils.safe_load import UnsafeCheckpointError

from ..helpers import TINY_CONFIG, run_tool, serve_directory


class Marker:
    """Unpickled, it creates the file ``path`` (as a hostile file would run any code)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def write_malicious_pickle(path: Path, marker: Path) -> Path:
    """A detectron2-style .pkl checkpoint that runs code when unpickled."""
    path.write_bytes(pickle.dumps({"model": {"weight": Marker(marker)}, "__author__": "someone"}, protocol=2))
    return path


@pytest.fixture
def hostile_server(tmp_path, monkeypatch):
    """(base URL of a loopback server with evil.pkl and redirects to it, the marker path, the
    requested paths)."""
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "MARKER"
    served = tmp_path / "served"
    served.mkdir()
    write_malicious_pickle(served / "evil.pkl", marker)
    redirects = {"/weights.pth": "/evil.pkl", "/weights.pkl": "/evil.pkl", "/x": "/evil.pkl"}
    with serve_directory(served, redirects) as (base, requests):
        yield base, marker, requests


URL_TRICKS = {
    "http": "{base}/evil.pkl",
    "fragment": "{base}/x#?/evil.pkl",
    "query": "{base}/evil.pkl?matching_heuristics=True",
    "redirect_to_pkl": "{base}/weights.pkl",
    "redirect_renamed": "{base}/weights.pth",
}


@pytest.mark.parametrize("trick", sorted(URL_TRICKS))
def test_no_url_trick_unpickles_a_remote_file(hostile_server, trick):
    base, marker, _ = hostile_server
    url = URL_TRICKS[trick].format(base=base)
    with pytest.raises(ValueError, match=r"^(Refusing to unpickle|Cannot load checkpoint) .*") as error:
        GCNetCheckpointer(nn.Linear(2, 2)).load(url)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_pkl_sources_are_judged_by_where_they_come_from(hostile_server):
    base, marker, requests = hostile_server
    with pytest.raises(UnsafeCheckpointError, match=rf"^Refusing to unpickle {base}/evil\.pkl: \.pkl files run code"):
        GCNetCheckpointer(nn.Linear(2, 2)).load(f"{base}/evil.pkl")
    assert requests == []  # refused before anything is downloaded
    # The trusted host by name, but over plain http, or a look-alike: refused all the same.
    assert pickle_refusal("http://dl.fbaipublicfiles.com/detectron2/x.pkl")
    assert pickle_refusal("https://dl.fbaipublicfiles.com.evil.org/x.pkl")
    assert pickle_refusal("https://dl.fbaipublicfiles.com:8443/x.pkl")
    assert pickle_refusal("https://user@dl.fbaipublicfiles.com/x.pkl")
    assert pickle_refusal("https://dl.fbaipublicfiles.com/x.pkl") is None
    assert pickle_refusal("detectron2://ImageNetPretrained/torchvision/R-50.pkl") is None
    assert not marker.exists()


def test_a_local_pkl_is_read_without_running_code(tmp_path):
    """A local .pkl the user names is read, but only as arrays and containers."""
    marker = tmp_path / "MARKER"
    evil = write_malicious_pickle(tmp_path / "evil.pkl", marker)
    with pytest.raises(UnsafeCheckpointError, match=rf"^Cannot load checkpoint {evil}: it holds io\.open, which"):
        GCNetCheckpointer(nn.Linear(2, 2)).load(str(evil))
    assert not marker.exists()
    good = tmp_path / "good.pkl"
    weights = {"weight": np.full((2, 2), 3.0, np.float32), "bias": np.zeros(2, np.float32)}
    good.write_bytes(pickle.dumps({"model": weights, "__author__": "Detectron2 Model Zoo"}, protocol=2))
    model = nn.Linear(2, 2)
    GCNetCheckpointer(model).load(str(good))
    assert torch.all(model.weight == 3.0)


def test_resume_never_unpickles_what_last_checkpoint_names(tmp_path):
    marker = tmp_path / "MARKER"
    evil = write_malicious_pickle(tmp_path / "evil.pkl", marker)
    out = tmp_path / "out"
    out.mkdir()
    (out / "last_checkpoint").write_text(str(evil))
    with pytest.raises(
        UnsafeCheckpointError, match=rf"^Refusing to unpickle {evil}, named by {out / 'last_checkpoint'}"
    ):
        GCNetCheckpointer(nn.Linear(2, 2), str(out)).resume_or_load("", resume=True)
    assert not marker.exists()


def test_tools_refuse_a_remote_pickle(hostile_server, tmp_path):
    """train_net --eval-only, the demo and the converter, run as a user runs them: one line,
    non-zero, no marker."""
    base, marker, _ = hostile_server
    url = f"{base}/x#?/evil.pkl"
    env = {"FVCORE_CACHE": str(tmp_path / "cache")}
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        TINY_CONFIG,
        "--eval-only",
        f"train.init_checkpoint='{url}'",
        f"train.output_dir={tmp_path / 'o'}",
        env=env,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    refused = r"^train_net: (Refusing to unpickle|Cannot load checkpoint) .*(\.pkl files run code|could run code)"
    assert re.match(refused, last), last
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((32, 32, 3), np.uint8))
    argv = ["--config-file", TINY_CONFIG, "--input", photo, "--output", tmp_path / "drawn"]
    result = run_tool("tools/demo.py", *argv, "--opts", f"train.init_checkpoint='{url}'", env=env)
    assert result.returncode == 2 and re.search(r"(\.pkl files run code|unpickling it could run code)", result.stderr)
    local_copy = shutil.copy(tmp_path / "served" / "evil.pkl", tmp_path / "evil_copy.pkl")
    result = run_tool("tools/convert_checkpoint.py", "--converter", "mmdet", local_copy, tmp_path / "converted.pth")
    assert result.returncode == 1 and "it holds io.open" in result.stderr
    assert not (tmp_path / "converted.pth").exists()
    assert not marker.exists()
    assert not os.path.exists(tmp_path / "drawn" / "photo.png")


def imagenet_like_pkl(path: Path, value: float) -> Path:
    """A .pkl of numpy arrays in detectron2's ImageNet format, as R-50.pkl."""
    weights = {"weight": np.full((2, 2), value, np.float32), "bias": np.zeros(2, np.float32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"model": weights, "__author__": "Detectron2 Model Zoo"}, protocol=2))
    return path


TRUSTED_NAME = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
TRUSTED_URL = "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/torchvision/R-50.pkl"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Every download goes through a proxy on a closed loopback port; an empty cache."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    for name in ("https_proxy", "http_proxy"):
        monkeypatch.setenv(name, closed)
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_refused_download_never_comes_back_as_trusted_weights(offline, tmp_path, monkeypatch):
    """An untrusted server's file whose path mimics detectron2's model zoo is refused, and is
    never read when the trusted name is loaded later, online or not."""
    served = tmp_path / "served"
    imagenet_like_pkl(served / "detectron2" / "ImageNetPretrained" / "torchvision" / "R-50.pkl", 666.0)
    with serve_directory(served) as (base, _):
        monkeypatch.setenv("no_proxy", "127.0.0.1")  # the untrusted server answers
        mimic = f"{base}/detectron2/ImageNetPretrained/torchvision/R-50.pkl"
        with pytest.raises(UnsafeCheckpointError, match=r"^Refusing to unpickle .*: \.pkl files run code"):
            GCNetCheckpointer(nn.Linear(2, 2)).load(mimic)
        download_verified(mimic)  # fetched all the same, by whatever else: cached under its own host
        monkeypatch.setenv("no_proxy", "")
    model = nn.Linear(2, 2)
    with pytest.raises(DownloadError, match=rf"^Could not download {TRUSTED_URL}: .*Connection refused"):
        GCNetCheckpointer(model).load(TRUSTED_NAME)
    assert not torch.any(model.weight == 666.0)


def test_a_trusted_name_reads_only_what_came_from_its_source(offline, tmp_path):
    """In the cache, where the trusted name resolves: a file with the record of its arrival
    from detectron2's model zoo is read offline; the same file without it, or with a record of
    bytes that came from elsewhere, is not (and the latter is deleted)."""
    local = Path(cache_path(TRUSTED_URL))
    record = dict(url=TRUSTED_URL, final_url=TRUSTED_URL, sha256="", copied_from="")

    def plant(final_url=None, with_record=True):
        imagenet_like_pkl(local, 3.0)
        if with_record:
            record.update(sha256=sha256sum(str(local)), final_url=final_url or TRUSTED_URL)
            (local.parent / (local.name + RECORD_SUFFIX)).write_text(json.dumps(record))

    plant()
    model = nn.Linear(2, 2)
    GCNetCheckpointer(model).load(TRUSTED_NAME)
    assert torch.all(model.weight == 3.0)

    plant(with_record=False)
    (local.parent / (local.name + RECORD_SUFFIX)).unlink()
    with pytest.raises(DownloadError, match=rf"^Could not download {TRUSTED_URL}: "):
        GCNetCheckpointer(nn.Linear(2, 2)).load(TRUSTED_NAME)

    plant(final_url="https://mirror.example.org/R-50.pkl")
    with pytest.raises(UnsafeCheckpointError) as info:
        GCNetCheckpointer(nn.Linear(2, 2)).load(TRUSTED_NAME)
    assert str(info.value) == (
        f"Refusing to unpickle {TRUSTED_URL}: its bytes came from https://mirror.example.org/R-50.pkl; .pkl files run "
        "code when loaded and are only read from local paths you name or, over https, dl.fbaipublicfiles.com"
    )
    assert not local.exists() and not (local.parent / (local.name + RECORD_SUFFIX)).exists()
