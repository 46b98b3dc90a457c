"""Verified downloads and the gcnet:// handler, against a loopback HTTP server."""

import hashlib
import http.server
import threading

import pytest
import torch
import torchvision
from iopath.common.file_io import PathManager as PathManagerBase

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig
from detectron2.utils.file_io import PathManager

from gcnet.model_zoo import CheckpointSource, GCNetHandler
from gcnet.modeling import build_gcnet_resnet
from gcnet.utils.download_cache import download_verified

from ..helpers import CONFIGS, serve_directory


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_files(cache):
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "server"
    folder.mkdir()
    payload = folder / "weights-0123.pth"
    payload.write_bytes(b"gcnet" * 1000)
    with serve_directory(folder) as (url, requests):
        yield url, requests, payload


def test_download_then_cache_hit_without_request(served, tmp_path):
    url, requests, payload = served
    cache = tmp_path / "cache"
    path = download_verified(f"{url}/weights-0123.pth", sha256_of(payload)[:8], str(cache), progress=False)
    assert open(path, "rb").read() == payload.read_bytes()
    assert requests == ["/weights-0123.pth"]
    assert download_verified(f"{url}/weights-0123.pth", sha256_of(payload)[:8], str(cache)) == path
    assert requests == ["/weights-0123.pth"]


def test_full_digest_is_accepted(served, tmp_path):
    url, _, payload = served
    path = download_verified(f"{url}/weights-0123.pth", sha256_of(payload), str(tmp_path), progress=False)
    assert open(path, "rb").read() == payload.read_bytes()


def test_wrong_hash_is_refused_and_deleted(served, tmp_path):
    url, _, payload = served
    wrong = "0" * 8 if not sha256_of(payload).startswith("0" * 8) else "f" * 8
    with pytest.raises(
        ValueError, match=r"weights-0123\.pth has sha256 [0-9a-f]{64}, expected 0+\.\.\.; the file was deleted"
    ):
        download_verified(f"{url}/weights-0123.pth", wrong, str(tmp_path / "cache"), progress=False)
    assert cached_files(tmp_path / "cache") == []


def test_http_404_names_the_url(served, tmp_path):
    url, _, _ = served
    with pytest.raises(OSError, match=r"Could not download http://127\.0\.0\.1:\d+/missing-1234\.pth: .*404"):
        download_verified(f"{url}/missing-1234.pth", "1234", str(tmp_path / "cache"), progress=False)
    assert cached_files(tmp_path / "cache") == []


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1 MB and closes the connection after 1 kB, like a dropped download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"x" * 1024)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_interrupted_download_leaves_no_file(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big-abcd.pth"
        with pytest.raises(OSError, match="Could not download"):
            download_verified(url, "abcd", str(tmp_path / "cache"), progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert cached_files(tmp_path / "cache") == []


def test_gcnet_handler_downloads_converts_and_loads(tmp_path):
    folder = tmp_path / "server"
    folder.mkdir()
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    upstream = folder / "resnet18.pth"
    torch.save(reference.state_dict(), upstream)
    with serve_directory(folder) as (url, requests):
        handler = GCNetHandler(
            {
                "ImageNetPretrained/test/R-18": CheckpointSource(
                    "ImageNetPretrained/test/R-18", f"{url}/resnet18.pth", sha256_of(upstream)[:8], "torchvision_resnet"
                )
            },
            cache_dir=str(tmp_path / "cache"),
        )
        path_manager = PathManagerBase()
        path_manager.register_handler(handler)
        local = path_manager.get_local_path("gcnet://ImageNetPretrained/test/R-18")
        assert local.endswith("converted/ImageNetPretrained/test/R-18.pth")
        assert path_manager.get_local_path("gcnet://ImageNetPretrained/test/R-18") == local
        assert requests == ["/resnet18.pth"]
    model = build_gcnet_resnet(18, context="gc", context_stages=["res4"], out_features=["res5"]).eval()
    DetectionCheckpointer(model).load(local)
    torch.testing.assert_close(model.res3[1].conv2.weight, reference.layer2[1].conv2.weight)
    torch.testing.assert_close(model.stem.conv1.norm.running_var, reference.bn1.running_var)


def test_unknown_name_suggests_close_ones(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"Unknown model 'ImageNetPretrained/torchvision/R-102'; closest: ImageNetPretrained/torchvision/R-101",
    ):
        PathManager.get_local_path("gcnet://ImageNetPretrained/torchvision/R-102")


def test_every_config_checkpoint_resolves():
    """Each config's init_checkpoint is a detectron2 ImageNet model or a known gcnet:// name,
    downloaded over https and checked against a digest (but for the one file published
    without)."""
    handler = GCNetHandler()
    names = set()
    for config in sorted(CONFIGS.rglob("*.py")):
        if config.parent.name == "common" or config.parent.parent.name == "common":
            continue
        checkpoint = LazyConfig.load(str(config)).train.init_checkpoint
        if "_timm_" in config.name and checkpoint == "":  # the timm backbone loads its own weights
            continue
        names.add(checkpoint)
        if checkpoint.startswith("gcnet://"):
            source = handler.source(checkpoint)
            assert source.url.startswith("https://") and source.expected_sha256 in source.url, checkpoint
            assert source.expected_sha256 or checkpoint == "gcnet://ImageNetPretrained/mit/R-101-deepbase", checkpoint
        else:
            assert checkpoint == "detectron2://ImageNetPretrained/torchvision/R-50.pkl", config
    assert "gcnet://ImageNetPretrained/mit/R-101-deepbase" in names and len(names) == 7


def test_a_cached_download_is_verified_on_every_use(served, tmp_path, caplog):
    url, requests, payload = served
    cache = tmp_path / "cache"
    digest = sha256_of(payload)
    path = download_verified(f"{url}/weights-0123.pth", digest[:8], str(cache), progress=False)
    with open(path, "r+b") as f:
        f.truncate(100)
    assert download_verified(f"{url}/weights-0123.pth", digest[:8], str(cache), progress=False) == path
    assert open(path, "rb").read() == payload.read_bytes() and len(requests) == 2
    assert f"The cached {path} cannot be used (its sha256 is " in caplog.text
    # No published digest: the one recorded at download time is checked.
    path = download_verified(f"{url}/weights-0123.pth", "", str(tmp_path / "other"), progress=False)
    with open(path, "ab") as f:
        f.write(b"appended")
    download_verified(f"{url}/weights-0123.pth", "", str(tmp_path / "other"), progress=False)
    assert open(path, "rb").read() == payload.read_bytes() and len(requests) == 4
    # A digest changed in the manifest: the cached file no longer matches it, nor does the server's.
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "f" * 8
    with pytest.raises(ValueError, match=rf"has sha256 {digest}, expected {wrong}\.\.\."):
        download_verified(f"{url}/weights-0123.pth", wrong, str(cache), progress=False)


def test_a_converted_file_is_rebuilt_when_it_or_its_source_changes(tmp_path, caplog):
    folder = tmp_path / "server"
    folder.mkdir()
    upstream = folder / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), upstream)
    name = "ImageNetPretrained/test/R-18"
    with serve_directory(folder) as (url, requests):
        source = CheckpointSource(name, f"{url}/resnet18.pth", sha256_of(upstream)[:8], "torchvision_resnet")
        handler = GCNetHandler({name: source}, cache_dir=str(tmp_path / "cache"))
        converted = handler.converted_path(f"gcnet://{name}")
        intact = open(converted, "rb").read()
        with open(converted, "r+b") as f:
            f.truncate(1000)
        assert handler.converted_path(f"gcnet://{name}") == converted and open(converted, "rb").read() == intact
        assert "does not have the sha256 it was written with" in caplog.text
        # The manifest names another upstream file: converted again from it.
        torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), folder / "resnet18-v2.pth")
        moved = CheckpointSource(
            name, f"{url}/resnet18-v2.pth", sha256_of(folder / "resnet18-v2.pth")[:8], "torchvision_resnet"
        )
        GCNetHandler({name: moved}, cache_dir=str(tmp_path / "cache")).converted_path(f"gcnet://{name}")
        assert "was made from another upstream file or converter" in caplog.text
        assert open(converted, "rb").read() != intact
        assert requests == ["/resnet18.pth", "/resnet18-v2.pth"]
