"""GCNetCheckpointer: a save that dies half-way leaves the previous checkpoint in charge; loads
that could run code or hide a broken file are refused."""
import logging

import pytest
import torch
from torch import nn

from gcnet.engine import GCNetCheckpointer


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
