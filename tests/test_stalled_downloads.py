"""A server that accepts a connection and then sends nothing stops every download of the
project within the read timeout ($GCNET_DOWNLOAD_TIMEOUT), in one line that names the URL and
the way out for that entry point, with nothing left behind: the zoo's gcnet:// handler and its
command line, an initial checkpoint of train_net (the checkpointer), a remote image, and
prepare_datasets."""

import pytest
import torch
import yaml
from torch import nn

from gcnet.data import read_image
from gcnet.engine import GCNetCheckpointer
from gcnet.model_zoo import CheckpointSource, GCNetHandler
from gcnet.utils.download import TIMEOUT_ENV, DownloadError

from .helpers import run_tool
from .loopback_servers import serve, silent

STALLED = f"the server sent nothing for 0.5 s ({TIMEOUT_ENV}=CONNECT,READ sets the seconds to wait (default 10,60))"


@pytest.fixture
def stalled(monkeypatch, tmp_path):
    """(base URL of a server that sends nothing, the environment of a tool run against it)."""
    env = {TIMEOUT_ENV: "5,0.5", "FVCORE_CACHE": str(tmp_path / "cache"), "no_proxy": "127.0.0.1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with serve(silent) as (base, _):
        yield base, env


def left_behind(tmp_path):
    return [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_zoo_handler(stalled, tmp_path):
    base, _ = stalled
    source = CheckpointSource("test/R-18", f"{base}/resnet18-0123abcd.pth", "", "torchvision_resnet")
    with pytest.raises(DownloadError) as info:
        GCNetHandler({source.name: source}, str(tmp_path / "cache")).converted_path("gcnet://test/R-18")
    assert str(info.value) == (
        f"Could not download {source.url}: {STALLED}. Without network access, download it on another machine and run: "
        "python -m gcnet.model_zoo download test/R-18 --file /path/to/resnet18-0123abcd.pth"
    )
    assert left_behind(tmp_path) == []


def test_zoo_command_line(stalled, tmp_path):
    base, env = stalled
    url = f"{base}/resnet18-0123abcd.pth"
    entry = dict(name="test/R-18", url=url, sha256="0123abcd" + "0" * 56, converter="torchvision_resnet")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"imagenet_backbones": [entry]}))
    result = run_tool("-m", "gcnet.model_zoo", "--manifest", manifest, "download", "test/R-18", env=env, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"gcnet.model_zoo: Could not download {entry['url']}: {STALLED}. ")
    assert [p.name for p in left_behind(tmp_path)] == ["manifest.yaml"]


def test_initial_checkpoint(stalled, tmp_path):
    base, _ = stalled
    model = nn.Linear(2, 2)
    before = model.weight.detach().clone()
    with pytest.raises(DownloadError) as info:
        GCNetCheckpointer(model).load(f"{base}/model_final.pth")
    assert str(info.value) == (
        f"Could not download {base}/model_final.pth: {STALLED}. Without network access, copy the file to this "
        "machine and pass its path (train.init_checkpoint=/path/to/model_final.pth)"
    )
    assert torch.equal(model.weight, before) and left_behind(tmp_path) == []


def test_remote_image(stalled, tmp_path):
    base, _ = stalled
    with pytest.raises(DownloadError, match=rf"^Could not download {base}/photo\.jpg: the server sent nothing for "):
        read_image(f"{base}/photo.jpg")
    assert left_behind(tmp_path) == []


def test_prepare_datasets(stalled, tmp_path):
    base, env = stalled
    url = f"{base}/balloon.zip"
    result = run_tool("tools/prepare_datasets.py", "balloon", "--root", tmp_path / "datasets", "--url", url, env=env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"prepare_datasets: Could not download {url}: {STALLED}. Without network")
    assert left_behind(tmp_path) == [] and list((tmp_path / "datasets").iterdir()) == []
