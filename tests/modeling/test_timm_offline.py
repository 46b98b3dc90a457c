"""timm's ImageNet weights without the Hugging Face hub: an unreachable or stalled hub is said
in one line within the download timeouts, naming pretrained_file, without the hub client's
retries; weights already in the Hugging Face cache are read from there without asking it."""

import logging
import socket

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

from gcnet.modeling import TimmBackbone
from gcnet.utils.download import TIMEOUT_ENV

from ..loopback_servers import serve, silent

MODEL = "gcresnext26ts"
WAY_OUT = (
    f"); set pretrained_file to a local state dict of the model (e.g. {MODEL}.safetensors), "
    "or pretrained=False to train from random init"
)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hub"


def test_an_unreachable_hub_is_one_line_without_retries(empty_hub_cache, monkeypatch, caplog):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    caplog.set_level(logging.INFO)
    with pytest.raises(FileNotFoundError) as info:
        TimmBackbone(MODEL)
    url = f"{endpoint}/timm/{MODEL}.ch_in1k/resolve/main/model.safetensors"
    assert str(info.value) == (
        f"Cannot get the ImageNet weights of timm's {MODEL}: not in timm's cache, and the download failed "
        f"(cannot reach {url}: [Errno 111] Connection refused" + WAY_OUT
    )
    assert "Retry" not in caplog.text and "huggingface" not in caplog.text.lower()


def test_a_stalled_hub_is_one_line(empty_hub_cache, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "5,0.5")
    with serve(silent) as (endpoint, requests):
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
        with pytest.raises(FileNotFoundError) as info:
            TimmBackbone(MODEL)
    assert f"the server sent nothing for 0.5 s ({TIMEOUT_ENV}=CONNECT" in str(info.value)
    assert str(info.value).endswith(WAY_OUT[2:])
    assert requests == [f"/timm/{MODEL}.ch_in1k/resolve/main/model.safetensors"]


def test_offline_mode_is_said_at_once(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    offline = r"failed \(Hugging Face's offline mode is on \(HF_HUB_OFFLINE\)\); set pretrained_file"
    with pytest.raises(FileNotFoundError, match=offline):
        TimmBackbone(MODEL)


def test_weights_in_the_hub_cache_are_read_without_the_hub(empty_hub_cache, monkeypatch):
    """The copy in the Hugging Face cache is loaded, the hub never asked (it is unreachable)."""
    torch.manual_seed(0)
    weights = timm.create_model(MODEL).state_dict()
    snapshot = empty_hub_cache / f"models--timm--{MODEL}.ch_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(weights, str(snapshot / "model.safetensors"))
    refs = empty_hub_cache / f"models--timm--{MODEL}.ch_in1k" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    backbone = TimmBackbone(MODEL, norm="BN")
    # features_only names the stem's modules stem_<name>
    torch.testing.assert_close(backbone.model.state_dict()["stem_conv1.conv.weight"], weights["stem.conv1.conv.weight"])
