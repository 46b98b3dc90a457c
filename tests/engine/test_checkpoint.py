"""GCNetCheckpointer: a save that dies half-way leaves the previous checkpoint in charge; loads
that could run code or hide a broken file are refused."""

import io
import logging
import os
import types

import pytest
import torch
from iopath.common.file_io import PathHandler
from torch import nn

from detectron2.utils.events import EventStorage
from detectron2.utils.file_io import PathManager

from gcnet.engine import BestCheckpointer, CheckpointMismatchError, GCNetCheckpointer, PeriodicCheckpointer


def make_checkpointer(tmp_path, value):
    model = nn.Linear(3, 3)
    nn.init.constant_(model.weight, value)
    return GCNetCheckpointer(model, str(tmp_path))


def test_save_then_load(tmp_path):
    make_checkpointer(tmp_path, 1.0).save("model_0000009", iteration=9)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    restored = make_checkpointer(tmp_path, 0.0)
    extra = restored.resume_or_load("", resume=True)
    assert extra["iteration"] == 9 and torch.all(restored.model.weight == 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000009.pth"]


def test_interrupted_save_keeps_last_checkpoint(tmp_path, monkeypatch):
    make_checkpointer(tmp_path, 1.0).save("model_0000009", iteration=9)
    before = (tmp_path / "model_0000009.pth").read_bytes()

    def dies_half_way(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # as if the process were stopped here

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        make_checkpointer(tmp_path, 2.0).save("model_0000019", iteration=19)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000009.pth"]
    assert (tmp_path / "model_0000009.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"


def test_resume_removes_partial_files_and_logs_fresh_start(tmp_path, caplog):
    (tmp_path / "model_0000004.pth.partial").write_bytes(b"killed while saving")
    checkpointer = make_checkpointer(tmp_path, 0.5)
    with caplog.at_level(logging.INFO):
        checkpointer.resume_or_load("", resume=True)
    assert not (tmp_path / "model_0000004.pth.partial").exists()
    assert f"Removing {tmp_path / 'model_0000004.pth.partial'}, left by an interrupted save" in caplog.text
    assert f"Resume: no checkpoint in {tmp_path}; starting from randomly initialised weights" in caplog.text
    assert torch.all(checkpointer.model.weight == 0.5)


class ObjectStoreHandler(PathHandler):
    """Files of ``memory-test://`` kept in a dict, as an object store keeps them: an upload
    appears when it is complete, and nothing is renamed."""

    PREFIX = "memory-test://"

    def __init__(self, local_dir):
        super().__init__()
        self.files, self.local_dir = {}, local_dir

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _open(self, path, mode="r", buffering=-1, **kwargs):
        if "r" in mode:
            return io.BytesIO(self.files[path]) if "b" in mode else io.StringIO(self.files[path].decode())
        files = self.files

        class Upload(io.BytesIO if "b" in mode else io.StringIO):
            def close(self):
                value = self.getvalue()
                files[path] = value if isinstance(value, bytes) else value.encode()
                super().close()

        return Upload()

    def _get_local_path(self, path, force=False, **kwargs):
        local = self.local_dir / path[len(self.PREFIX) :].replace("/", "_")
        local.write_bytes(self.files[path])
        return str(local)

    def _exists(self, path, **kwargs):
        return path in self.files or self._isdir(path)

    def _isfile(self, path, **kwargs):
        return path in self.files

    def _isdir(self, path, **kwargs):
        return any(k.startswith(path.rstrip("/") + "/") for k in self.files)

    def _ls(self, path, **kwargs):
        prefix = path.rstrip("/") + "/"
        return [k[len(prefix) :] for k in self.files if k.startswith(prefix)]

    def _mkdirs(self, path, **kwargs):
        pass


def test_save_and_resume_through_a_path_handler(tmp_path, monkeypatch):
    """A save_dir of another PathManager handler: fvcore's save writes through it (a local
    open would write a folder named "memory-test:" here instead)."""
    handler = ObjectStoreHandler(tmp_path)
    monkeypatch.setitem(PathManager._path_handlers, ObjectStoreHandler.PREFIX, handler)
    monkeypatch.chdir(tmp_path)
    make_checkpointer("memory-test://run", 1.0).save("model_0000009", iteration=9)
    assert sorted(handler.files) == ["memory-test://run/last_checkpoint", "memory-test://run/model_0000009.pth"]
    assert list(tmp_path.iterdir()) == []
    restored = make_checkpointer("memory-test://run", 0.0)
    assert restored.resume_or_load("", resume=True)["iteration"] == 9 and torch.all(restored.model.weight == 1.0)


@pytest.mark.parametrize(
    "break_newest,reason,intact",
    [
        (
            lambda out: (out / "model_0000019.pth").write_bytes((out / "model_0000019.pth").read_bytes()[:200]),
            "it is truncated or corrupt",
            9,
        ),
        (lambda out: (out / "model_0000019.pth").unlink(), "does not exist", 9),
        (lambda out: (out / "model_0000019.pth").write_bytes(b""), "it is truncated or corrupt", 9),
        # A broken tag: the newest checkpoint it should have named is intact.
        (lambda out: (out / "last_checkpoint").write_text(""), "last_checkpoint names no file", 19),
        (lambda out: (out / "last_checkpoint").write_text("\x00garbage\x01"), "", 19),
        (
            lambda out: (out / "last_checkpoint").write_bytes(b"\xff\xfe" + os.urandom(62)),
            "last_checkpoint names no file",
            19,
        ),
    ],
    ids=["truncated", "missing", "empty_file", "empty_tag", "garbage_tag", "random_bytes_tag"],
)
def test_a_broken_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, caplog, break_newest, reason, intact):
    make_checkpointer(tmp_path, 1.0).save("model_0000009", iteration=9)
    os.utime(tmp_path / "model_0000009.pth", (1, 1))  # older than what follows, whatever the clock's resolution
    make_checkpointer(tmp_path, 2.0).save("model_0000019", iteration=19)
    named = (tmp_path / "last_checkpoint").read_text()
    break_newest(tmp_path)
    try:
        tag = (tmp_path / "last_checkpoint").read_text().strip()
    except UnicodeDecodeError:  # not a file name: the tag itself is what cannot be used
        tag = ""
    newest = tmp_path / (tag or "last_checkpoint")
    restored = make_checkpointer(tmp_path, 0.0)
    with caplog.at_level(logging.WARNING):
        extra = restored.resume_or_load("", resume=True)
    assert extra["iteration"] == intact and torch.all(restored.model.weight == (1.0 if intact == 9 else 2.0))
    assert f"Resume: the newest checkpoint {newest} cannot be loaded (" in caplog.text
    assert (
        reason in caplog.text
        and f"resuming from {tmp_path / f'model_{intact:07d}.pth'}, the newest intact checkpoint" in caplog.text
    )
    assert named == "model_0000019.pth"


def test_no_intact_checkpoint_is_one_line(tmp_path):
    make_checkpointer(tmp_path, 1.0).save("model_0000009", iteration=9)
    (tmp_path / "model_0000009.pth").write_bytes(b"broken")
    with pytest.raises(
        ValueError,
        match=rf"^Cannot resume from {tmp_path}: no intact checkpoint \({tmp_path / 'model_0000009.pth'}: Cannot "
        rf"load checkpoint",
    ):
        make_checkpointer(tmp_path, 0.0).resume_or_load("", resume=True)


def test_a_run_keeps_one_final_checkpoint_and_links_the_best(tmp_path):
    """The last iteration is saved once, as model_final (max_to_keep counts it); the best
    checkpoint of an evaluation at the end is a hard link to it, of an earlier one a file."""
    checkpointer = GCNetCheckpointer(nn.Linear(2, 2), str(tmp_path))
    periodic = PeriodicCheckpointer(checkpointer, period=100, max_to_keep=1)
    best = BestCheckpointer(0, checkpointer, "segm/AP")  # evaluated at the end only
    trainer = types.SimpleNamespace(iter=0, max_iter=200)
    periodic.trainer = best.trainer = trainer
    periodic.before_train()
    with EventStorage(start_iter=0) as trainer.storage:
        for trainer.iter in range(200):
            trainer.storage.iter = trainer.iter
            periodic.after_step()
        trainer.iter = trainer.storage.iter = 200  # as detectron2's loop leaves them
        trainer.storage.put_scalar("segm/AP", 12.5)  # what EvalHook stores at the end
        best.after_train()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_best.pth", "model_final.pth"]
    assert (tmp_path / "model_best.pth").samefile(tmp_path / "model_final.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 199

    checkpointer.save_or_link("model_best", 150, iteration=150)  # weights of another iteration: a file
    assert not (tmp_path / "model_best.pth").samefile(tmp_path / "model_final.pth")
    assert torch.load(tmp_path / "model_best.pth", weights_only=True)["iteration"] == 150
    assert (
        torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 199
    )  # replaced, not written through


class Detector(nn.Module):
    """A backbone and a classifier of ``num_classes`` classes and a background, as detectron2's
    box predictor: the fit rules' test model."""

    def __init__(self, num_classes=3, width=8):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = nn.Conv2d(3, width, 3)
        self.norm = nn.BatchNorm2d(width)
        self.cls_score = nn.Linear(width, num_classes + 1)


def saved(tmp_path, model, name="other.pth"):
    torch.save({"model": model.state_dict()}, tmp_path / name)
    return str(tmp_path / name)


def test_an_initialisation_starts_the_class_layers_new_and_says_so(tmp_path, caplog):
    other = Detector(num_classes=80)
    path = saved(tmp_path, other)
    model = Detector(num_classes=3)
    with caplog.at_level(logging.INFO):
        GCNetCheckpointer(model).load(path, fit="init")
    assert torch.equal(model.backbone.weight, other.backbone.weight)
    assert model.cls_score.weight.shape == (4, 8)
    assert caplog.records[-1].getMessage() == (
        f"Loaded {path}: 6 of the model's 8 tensors; of another shape, new: cls_score.* (2)"
    )
    with pytest.raises(CheckpointMismatchError, match="cls_score.weight is \\[81, 8\\] in it, \\[4, 8\\] in the model"):
        GCNetCheckpointer(Detector(num_classes=3)).load(path, fit="all")


def test_an_initialisation_of_another_architecture_is_refused_before_the_model_changes(tmp_path):
    path = saved(tmp_path, Detector(width=16))
    model = Detector(width=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as error:
        GCNetCheckpointer(model).load(path, fit="init", way_out="give another")
    assert str(error.value) == (
        f"{path} does not fit the model of the config: 7 of its 8 parameters and buffers are of another shape in it "
        "(backbone.weight is [16, 3, 3, 3] in it, [8, 3, 3, 3] in the model; backbone.bias is [16] in it, [8] in the "
        "model; norm.weight is [16] in it, [8] in the model; ...); the config builds a Detector of 0.0M values in 8 "
        "tensors, the checkpoint holds 0.0M values in 8 tensors; give another"
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    GCNetCheckpointer(model).load(path, fit="any")  # partial loading, asked for: what fits
    assert torch.equal(model.cls_score.bias, torch.load(path)["model"]["cls_score.bias"])


def test_max_to_keep_holds_for_the_folder_across_resumes(tmp_path):
    """Four processes, each resumed where the last stopped, keep the newest 3 periodic
    checkpoints of the folder; the final one counts as the newest, the best one is kept."""
    out = tmp_path
    (out / "model_best.pth").write_bytes(b"best")
    for start in (0, 40, 80, 120):
        checkpointer = GCNetCheckpointer(nn.Linear(2, 2), str(out))
        periodic = PeriodicCheckpointer(checkpointer, period=10, max_iter=200, max_to_keep=3)
        periodic.trainer = types.SimpleNamespace(max_iter=200)
        periodic.before_train()
        for iteration in range(start, start + 40):
            periodic.step(iteration)
    assert sorted(p.name for p in out.glob("*.pth")) == [
        "model_0000139.pth",
        "model_0000149.pth",
        "model_0000159.pth",
        "model_best.pth",
    ]
    for iteration in range(160, 200):
        periodic.step(iteration)
    assert sorted(p.name for p in out.glob("*.pth")) == [
        "model_0000179.pth",
        "model_0000189.pth",
        "model_best.pth",
        "model_final.pth",
    ]


def test_the_best_checkpoint_of_a_resumed_run_links_and_remembers(tmp_path):
    """A run resumed from model_final (stopped in its final evaluation) links model_best to it
    instead of writing a copy, and a resumed run compares with the best score before it."""
    model = nn.Linear(2, 2)
    trainer = types.SimpleNamespace(iter=200, max_iter=200)
    checkpointer = GCNetCheckpointer(model, str(tmp_path))
    checkpointer.save("model_final", iteration=199)
    resumed = GCNetCheckpointer(model, str(tmp_path))
    assert resumed.resume_or_load("", resume=True)["iteration"] == 199
    best = BestCheckpointer(0, resumed, "segm/AP")
    best.trainer = trainer
    with EventStorage(start_iter=200) as trainer.storage:
        trainer.storage.put_scalar("segm/AP", 12.5)
        best.after_train()
    assert (tmp_path / "model_best.pth").samefile(tmp_path / "model_final.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"

    later = BestCheckpointer(100, resumed, "segm/AP")
    later.load_state_dict(best.state_dict())
    later.trainer = types.SimpleNamespace(iter=299, max_iter=400)
    with EventStorage(start_iter=299) as later.trainer.storage:
        later.trainer.storage.put_scalar("segm/AP", 10.0)  # worse than the 12.5 before the resume
        later.after_step()
    assert (tmp_path / "model_best.pth").samefile(tmp_path / "model_final.pth")
