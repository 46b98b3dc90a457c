"""Checkpoint files as the releases wrote them, written here the same way and loaded back: torch's
legacy (torch < 1.6, the 2019 releases) and zip formats; mmcv's ``save_checkpoint`` dict (``meta``
with strings, class-name tuples, ints, the config text and numpy scores; ``optimizer``) and
mmengine's (``message_hub`` with real ``HistoryBuffer`` objects, ``param_schedulers``). Anything
outside the allow-list is refused with its type named."""

import collections
import os
import time

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, PolyLR

import gcnet.model_zoo as zoo
from gcnet.engine import GCNetCheckpointer
from gcnet.utils.safe_load import HistoryBuffer, UnsafeCheckpointError, load_checkpoint_file

from ..helpers import run_tool
from .upstream_layouts import mmseg_checkpoint

FORMATS = {"legacy": False, "zip": True}  # torch.save's _use_new_zipfile_serialization
CONFIG_TEXT = "model = dict(type='EncoderDecoder', backbone=dict(type='ResNetV1c', depth=50))\n"


def trained_model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()  # momentum buffers in the optimizer state
    return model, optimizer


def mmcv_checkpoint():
    """What mmcv's ``save_checkpoint`` writes for an mmdetection/mmsegmentation v0.x run."""
    model, optimizer = trained_model_and_optimizer()
    meta = dict(
        mmcv_version="0.5.9",
        time=time.asctime(),
        mmseg_version="0.5.0+b975d3b",
        config=CONFIG_TEXT,
        CLASSES=("road", "sidewalk", "building"),
        PALETTE=[[128, 64, 128], [244, 35, 232], [70, 70, 70]],
        env_info="sys.platform: linux\nPython: 3.7.7",
        seed=None,
        exp_name="gcnet_r50-d8.py",
        epoch=1,
        iter=40000,
        hook_msgs=dict(last_ckpt="work_dirs/iter_40000.pth", best_score=np.float64(77.69)),
    )
    return {"meta": meta, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}


def mmengine_checkpoint():
    """What mmengine's ``Runner.save_checkpoint`` writes (mmdetection 3.x, mmsegmentation 1.x)."""
    model, optimizer = trained_model_and_optimizer()
    wrapper = OptimWrapper(optimizer)
    scheduler = PolyLR(optimizer, eta_min=1e-4, power=0.9, end=40000, by_epoch=False)
    hub = MessageHub.get_instance(f"gcnet-test-{time.time_ns()}")
    for step, loss in enumerate([1.5, 1.2, 0.9]):
        hub.update_scalar("train/loss", loss)
        hub.update_scalar("train/lr", 0.01 * (1 - step / 40000) ** 0.9)
    hub.update_info("iter", 3)
    hub.update_info("best_score", np.float64(41.47))
    meta = dict(
        cfg=CONFIG_TEXT,
        seed=1234,
        experiment_name="gcnet_20230101_000000",
        time="20230101_000000",
        mmengine_version="0.10.7",
        epoch=0,
        iter=3,
        dataset_meta=dict(
            classes=("wall", "building", "sky"), palette=[[120, 120, 120], [180, 120, 120], [6, 230, 230]]
        ),
    )
    return {
        "meta": meta,
        "state_dict": model.state_dict(),
        "message_hub": hub.state_dict(),
        "optimizer": wrapper.state_dict(),
        "param_schedulers": [scheduler.state_dict()],
    }


def assert_same(loaded, written):
    """Equal structure and values; a HistoryBuffer comes back as data with its arrays."""
    if isinstance(written, torch.Tensor):
        assert torch.equal(loaded, written)
    elif isinstance(written, np.ndarray):
        assert loaded.dtype == written.dtype and np.array_equal(loaded, written)
    elif isinstance(written, dict):
        assert type(loaded) is type(written) and list(loaded) == list(written)
        for key in written:
            assert_same(loaded[key], written[key])
    elif isinstance(written, (list, tuple)):
        assert type(loaded) is type(written) and len(loaded) == len(written)
        for a, b in zip(loaded, written):
            assert_same(a, b)
    elif type(written).__name__ == "HistoryBuffer":
        assert isinstance(loaded, HistoryBuffer)
        assert loaded.state["max_length"] == written.max_length
        assert_same(loaded.state["_log_history"], written._log_history)
        assert_same(loaded.state["_count_history"], written._count_history)
        assert set(loaded.state["statistics_methods"]) >= {"min", "max", "current", "mean"}
    else:
        assert type(loaded) is type(written) and loaded == written


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("writer", [mmcv_checkpoint, mmengine_checkpoint])
def test_release_formats_load_back_exactly(writer, fmt, tmp_path):
    written = writer()
    path = tmp_path / "release.pth"
    torch.save(written, path, _use_new_zipfile_serialization=FORMATS[fmt])
    assert path.read_bytes()[:2] == (b"PK" if fmt == "zip" else b"\x80\x02")
    loaded = zoo.load_upstream_checkpoint(str(path))
    assert_same(loaded, written)
    assert isinstance(loaded["meta"]["CLASSES" if "CLASSES" in written["meta"] else "dataset_meta"], (tuple, dict))
    assert loaded["state_dict"]._metadata == written["state_dict"]._metadata  # module versions, as torch keeps them


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_checkpointer_loads_legacy_and_zip_files(fmt, tmp_path):
    model, optimizer = trained_model_and_optimizer()
    path = tmp_path / "model_final.pth"
    extra = {"meta": {"best_score": np.float64(0.5), "classes": ("a", "b")}, "iteration": 7}
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **extra},
        path,
        _use_new_zipfile_serialization=FORMATS[fmt],
    )
    fresh, _ = trained_model_and_optimizer()
    with torch.no_grad():
        fresh[0].weight.zero_()
    remaining = GCNetCheckpointer(fresh).load(str(path))
    assert torch.equal(fresh[0].weight, model[0].weight)
    assert remaining["iteration"] == 7 and remaining["meta"]["best_score"] == 0.5


def test_a_release_checkpoint_converts_from_the_legacy_format(tmp_path):
    """An mmsegmentation release written as in 2020 (legacy format, mmcv meta, optimizer)
    converts with tools/convert_checkpoint.py."""
    upstream = mmseg_checkpoint(50, num_classes=150)
    upstream["meta"].update(mmcv_checkpoint()["meta"])
    upstream["optimizer"] = trained_model_and_optimizer()[1].state_dict()
    path = tmp_path / "gcnet_r50-d8_512x512_80k_ade20k.pth"
    torch.save(upstream, path, _use_new_zipfile_serialization=False)
    converted = zoo.convert_upstream_file("mmseg", str(path))
    assert torch.equal(
        converted["model"]["sem_seg_head.predictor.weight"], upstream["state_dict"]["decode_head.conv_seg.weight"]
    )


class Payload:
    """An object of a type outside the allow-list, as a hostile file could hold."""

    def __reduce__(self):
        return (os.system, ("echo unpickled",))


class Hook:
    """A class of the writer's code base (mmcv hooks and configs were pickled in some files)."""


class Getter:
    """Pickles as getattr(OrderedDict, "fromkeys"): getattr on anything but a HistoryBuffer."""

    def __reduce__(self):
        return (getattr, (collections.OrderedDict, "fromkeys"))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize(
    "hostile,named",
    [
        ({"meta": {"hook": Payload()}}, f"{os.system.__module__}.system"),
        ({"meta": {"hook": Hook()}}, f"{__name__}.Hook"),
        ({"meta": {"ids": np.array(["a", 1], dtype=object)}}, "numpy.dtypes.ObjectDType"),
        ({"message_hub": {"x": Getter()}}, "builtins.getattr(<class 'collections.OrderedDict'>, 'fromkeys')"),
    ],
    ids=["function", "class", "object-array", "getattr"],
)
def test_objects_outside_the_allow_list_are_refused_by_type(hostile, named, fmt, tmp_path, capfd):
    path = tmp_path / "hostile.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, **hostile}, path, _use_new_zipfile_serialization=FORMATS[fmt])
    expected = (
        f"Cannot load checkpoint {path}: it holds {named}, which is not on the allow-list of checkpoint contents "
        "(tensors, numbers, strings, containers, numeric numpy arrays, mmengine's HistoryBuffer); unpickling it "
        "could run code"
    )
    for load in (
        zoo.load_upstream_checkpoint,
        load_checkpoint_file,
        lambda p: GCNetCheckpointer(torch.nn.Linear(1, 1)).load(p),
    ):
        with pytest.raises(UnsafeCheckpointError) as info:
            load(str(path))
        assert str(info.value) == expected
    assert "unpickled" not in capfd.readouterr().out


def test_convert_tool_refuses_a_hostile_file_in_one_line(tmp_path):
    path = tmp_path / "hostile.pth"
    torch.save({"state_dict": {}, "meta": {"hook": Payload()}}, path)
    result = run_tool("tools/convert_checkpoint.py", "--converter", "mmseg", path, tmp_path / "out.pth")
    assert result.returncode != 0 and not (tmp_path / "out.pth").exists()
    assert (
        f"Cannot load checkpoint {path}: it holds {os.system.__module__}.system, which is not on the allow-list"
        in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
