"""No entry point runs code from a file it did not decide to trust: a real malicious pickle,
which creates a marker file when unpickled, is served over loopback HTTP under every URL trick
and given to the API, train_net, the demo, the converter and a resume; the marker never
appears. Whether a .pkl may be read is decided on the resolved local file and its source, and
even a trusted one is read by an unpickler that builds arrays and containers only."""
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from detectron2.utils.file_io import PathManager

from gcnet.engine import GCNetCheckpointer, load_config
from gcnet.engine.checkpoint import _pickle_refusal
from gcnet.engine.defaults import build_model, load_evaluated_checkpoint
from gcnet.utils.argument_parser import default_argument_parser
from gcnet.utils.safe_load import UnsafeCheckpointError

from ..helpers import TINY_CONFIG, load_tool, serve_directory


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
    """(base URL of a loopback server with evil.pkl and redirects to it, the marker path)."""
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "MARKER"
    served = tmp_path / "served"
    served.mkdir()
    write_malicious_pickle(served / "evil.pkl", marker)
    redirects = {"/weights.pth": "/evil.pkl", "/weights.pkl": "/evil.pkl", "/x": "/evil.pkl"}
    with serve_directory(served, redirects) as (base, _):
        yield base, marker


URL_TRICKS = {
    "http": "{base}/evil.pkl",
    "fragment": "{base}/x#?/evil.pkl",
    "query": "{base}/evil.pkl?matching_heuristics=True",
    "redirect_to_pkl": "{base}/weights.pkl",
    "redirect_renamed": "{base}/weights.pth",
}


@pytest.mark.parametrize("trick", sorted(URL_TRICKS))
def test_no_url_trick_unpickles_a_remote_file(hostile_server, trick):
    base, marker = hostile_server
    url = URL_TRICKS[trick].format(base=base)
    with pytest.raises(ValueError, match=r"^(Refusing to unpickle|Cannot load checkpoint) .*") as error:
        GCNetCheckpointer(nn.Linear(2, 2)).load(url)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_pkl_sources_are_judged_by_where_they_come_from(hostile_server):
    base, marker = hostile_server
    local = PathManager.get_local_path(f"{base}/evil.pkl")
    assert local.endswith("evil.pkl")
    with pytest.raises(UnsafeCheckpointError, match=rf"^Refusing to unpickle {local}: \.pkl files run code"):
        GCNetCheckpointer(nn.Linear(2, 2)).load(f"{base}/evil.pkl")
    # The trusted host by name, but over plain http, or a look-alike: refused all the same.
    assert _pickle_refusal("http://dl.fbaipublicfiles.com/detectron2/x.pkl")
    assert _pickle_refusal("https://dl.fbaipublicfiles.com.evil.org/x.pkl")
    assert _pickle_refusal("https://dl.fbaipublicfiles.com:8443/x.pkl")
    assert _pickle_refusal("https://dl.fbaipublicfiles.com/x.pkl") is None
    assert _pickle_refusal("detectron2://ImageNetPretrained/torchvision/R-50.pkl") is None
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
    with pytest.raises(UnsafeCheckpointError, match=rf"^Refusing to unpickle {evil}, named by {out / 'last_checkpoint'}"):
        GCNetCheckpointer(nn.Linear(2, 2), str(out)).resume_or_load("", resume=True)
    assert not marker.exists()


def test_tools_refuse_a_remote_pickle(hostile_server, tmp_path, capsys):
    """train_net --eval-only, the demo and the converter: one line, non-zero, no marker."""
    base, marker = hostile_server
    url = f"{base}/x#?/evil.pkl"
    args = default_argument_parser().parse_args(
        ["--config-file", TINY_CONFIG, "--eval-only", f"train.init_checkpoint='{url}'", f"train.output_dir={tmp_path / 'o'}"]
    )
    cfg = load_config(TINY_CONFIG, args.opts)
    with pytest.raises(UnsafeCheckpointError, match=r"^Refusing to unpickle .*evil\.pkl: \.pkl files run code"):
        load_evaluated_checkpoint(args, cfg, build_model(cfg))
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((32, 32, 3), np.uint8))
    demo = load_tool("demo")
    argv = ["--config-file", TINY_CONFIG, "--input", str(photo), "--output", str(tmp_path / "drawn")]
    assert demo.main(argv + ["--opts", f"train.init_checkpoint='{url}'"]) == 2
    assert "Refusing to unpickle" in capsys.readouterr().err
    convert = load_tool("convert_checkpoint")
    local_copy = shutil.copy(PathManager.get_local_path(f"{base}/evil.pkl"), tmp_path / "evil_copy.pkl")
    assert convert.main(["--converter", "mmdet", str(local_copy), str(tmp_path / "converted.pth")]) == 1
    assert "it holds io.open" in capsys.readouterr().err
    assert not (tmp_path / "converted.pth").exists()
    assert not marker.exists()
    assert not os.path.exists(tmp_path / "drawn" / "photo.png")
