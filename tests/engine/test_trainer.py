"""GCNetTrainer and LossGuard on a small model: NaN and spike handling, clipping."""

import logging
import math

import pytest
import torch
from torch import nn

from detectron2.engine import AMPTrainer, SimpleTrainer, hooks

from gcnet.engine import GCNetCheckpointer, GCNetTrainer, GuardedPeriodicCheckpointer, LossGuard


class Regression(nn.Module):
    """A linear model whose loss is NaN at the iterations listed in ``nan_at``."""

    def __init__(self, nan_at=(), raise_at=()):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.nan_at, self.raise_at = set(nan_at), set(raise_at)
        self.calls = 0

    def forward(self, batch):
        x, y = batch
        step, self.calls = self.calls, self.calls + 1
        if step in self.raise_at:
            raise FloatingPointError("Predicted boxes or scores contain Inf/NaN. Training has diverged.")
        loss = ((self.linear(x) - y) ** 2).mean()
        return {"loss": loss * float("nan") if step in self.nan_at else loss}


def batches():
    g = torch.Generator().manual_seed(0)
    while True:
        x = torch.randn(8, 4, generator=g)
        yield x, x.sum(dim=1, keepdim=True)


def make_trainer(model, **kwargs):
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return GCNetTrainer(model, batches(), optimizer, **kwargs)


class RecordWeights(hooks.HookBase):
    """The weight and its momentum buffer after every step."""

    def __init__(self):
        self.weights, self.momenta = {}, {}

    def after_step(self):
        weight = self.trainer.model.linear.weight
        self.weights[self.trainer.iter] = weight.detach().clone()
        self.momenta[self.trainer.iter] = self.trainer.optimizer.state[weight]["momentum_buffer"].clone()


def test_loss_guard_nan_and_spike():
    guard = LossGuard(spike_factor=5, window=3)
    assert guard.check(float("nan")) == "loss is nan"
    assert [guard.check(v) for v in (1.0, 2.0, 1.5)] == [None, None, None]
    assert guard.check(7.0) is None  # 7 < 5 x median 1.5
    assert guard.check(11.0).startswith("loss 11 spiked above 5 x the median 2 of the last 3 steps")
    assert guard.check(float("inf")) == "loss is inf" and guard.consecutive == 2 and guard.total == 3
    assert guard.check(1.0) is None and guard.consecutive == 0


@pytest.mark.parametrize(
    "kwargs,message",
    [(dict(action="ignore"), "loss_guard.action must be one of"), (dict(spike_factor=0.5), "spike_factor must be > 1")],
)
def test_loss_guard_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossGuard(**kwargs)


def test_nan_step_is_skipped(caplog):
    trainer = make_trainer(Regression(nan_at={3}), loss_guard=LossGuard(action="skip"))
    record = RecordWeights()
    trainer.register_hooks([record])
    with caplog.at_level(logging.WARNING, logger="gcnet.engine.trainer"):
        trainer.train(0, 8)
    assert torch.equal(record.weights[3], record.weights[2])  # no update at iteration 3
    assert not torch.equal(record.weights[4], record.weights[3])
    assert all(torch.isfinite(w).all() for w in record.weights.values())
    assert "Iteration 3: loss is nan; skipping the step" in caplog.text


def test_forward_floating_point_error_is_a_bad_step(caplog):
    trainer = make_trainer(Regression(raise_at={2}), loss_guard=LossGuard(action="skip"))
    with caplog.at_level(logging.WARNING, logger="gcnet.engine.trainer"):
        trainer.train(0, 5)
    assert "Iteration 2: loss is nan (forward raised: Predicted boxes or scores contain Inf/NaN" in caplog.text


def test_without_guard_detectron2_stops_on_nan():
    trainer = make_trainer(Regression(nan_at={2}))
    with pytest.raises(FloatingPointError, match="Loss became infinite or NaN at iteration=2"):
        trainer.train(0, 5)


def test_nan_step_reloads_last_checkpoint(tmp_path, caplog):
    trainer = make_trainer(Regression(nan_at={6}), loss_guard=LossGuard(action="reload"))
    checkpointer = GCNetCheckpointer(trainer.model, str(tmp_path), trainer=trainer)
    trainer.checkpointer = checkpointer
    record = RecordWeights()
    trainer.register_hooks([hooks.PeriodicCheckpointer(checkpointer, period=4), record])
    with caplog.at_level(logging.WARNING, logger="gcnet.engine.trainer"):
        trainer.train(0, 9)
    saved = torch.load(tmp_path / "model_0000003.pth", weights_only=True)
    # The step at iteration 6 restored the weights saved after iteration 3.
    torch.testing.assert_close(record.weights[6], saved["model"]["linear.weight"])
    assert (
        f"Iteration 6: loss is nan; reloading model and optimizer from {tmp_path / 'model_0000003.pth'}" in caplog.text
    )
    torch.testing.assert_close(record.momenta[6], saved["trainer"]["optimizer"]["state"][0]["momentum_buffer"])
    assert sorted(record.weights) == list(range(9))  # the iteration counter went on


def test_reload_without_checkpoint_skips(caplog):
    trainer = make_trainer(Regression(nan_at={1}), loss_guard=LossGuard(action="reload"))
    with caplog.at_level(logging.WARNING, logger="gcnet.engine.trainer"):
        trainer.train(0, 3)
    assert (
        "Iteration 1: loss is nan; no checkpoint written before the failures began to reload; skipping the step"
        in caplog.text
    )


def test_too_many_bad_steps_stop_training():
    trainer = make_trainer(Regression(nan_at=range(2, 10)), loss_guard=LossGuard(max_consecutive=3))
    with pytest.raises(FloatingPointError, match="Iteration 4: loss is nan; 3 bad steps in a row, stopping"):
        trainer.train(0, 10)


def test_gradient_clipping():
    trainer = make_trainer(Regression(), clip_grad_norm=0.01)
    norms = []

    class RecordGradNorm(hooks.HookBase):
        def after_step(self):
            grads = [p.grad for p in self.trainer.model.parameters()]
            norms.append(math.sqrt(sum(float((g**2).sum()) for g in grads)))

    trainer.register_hooks([RecordGradNorm()])
    trainer.train(0, 3)
    assert max(norms) <= 0.01 + 1e-6
    assert trainer.storage.history("grad_norm").latest() > 0.01  # the norm before clipping


def test_builds_on_amp_trainer_and_resumes_its_state():
    """GCNetTrainer is detectron2's AMPTrainer (its precision, gradient scaler and state), in
    fp32 without autocast; it resumes from a SimpleTrainer's state, which has no scaler."""
    trainer = make_trainer(Regression())
    assert isinstance(trainer, AMPTrainer) and trainer.precision == torch.float32
    assert not trainer.grad_scaler.is_enabled()
    trainer.train(0, 2)
    state = trainer.state_dict()
    assert set(state) >= {"iteration", "optimizer", "grad_scaler"}
    simple = SimpleTrainer(trainer.model, batches(), trainer.optimizer)
    simple.iter = 5
    resumed = make_trainer(Regression())
    resumed.load_state_dict(simple.state_dict())
    assert resumed.iter == 5
    resumed.load_state_dict(state)
    assert resumed.iter == trainer.iter == 2


class Diverging(Regression):
    """Its step at iteration ``wreck_at`` has a finite, ordinary loss whose gradient is 1e6
    times too large, as with a learning rate far too high: the update wrecks the weights and
    every later loss spikes."""

    def __init__(self, wreck_at):
        super().__init__()
        self.wreck_at = wreck_at

    def forward(self, batch):
        wreck = self.calls == self.wreck_at
        loss = super().forward(batch)["loss"]
        return {"loss": loss + (1e6 - 1) * (loss - loss.detach()) if wreck else loss}


def test_divergence_reloads_checkpoints_from_before_the_failures(tmp_path, caplog):
    trainer = make_trainer(Diverging(wreck_at=4), loss_guard=LossGuard(action="reload", window=3))
    checkpointer = GCNetCheckpointer(trainer.model, str(tmp_path), trainer=trainer)
    trainer.checkpointer = checkpointer
    record = RecordWeights()
    trainer.register_hooks([GuardedPeriodicCheckpointer(checkpointer, period=1), record])
    with caplog.at_level(logging.WARNING, logger="gcnet.engine.trainer"):
        trainer.train(0, 9)
    # Iteration 4 wrecked the weights (and was saved); 5 spiked and reloaded them, 6 spiked
    # again and went one checkpoint further back, to before the wreck; 7 was good again.
    assert f"Iteration 5: loss {trainer.storage.history('total_loss').values()[5][0]:.4g} spiked" in caplog.text
    assert f"reloading model and optimizer from {tmp_path / 'model_0000004.pth'}" in caplog.text
    assert (
        "Iteration 6: loss" in caplog.text
        and f"reloading model and optimizer from {tmp_path / 'model_0000003.pth'}" in caplog.text
    )
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == [
        f"model_{i:07d}.pth" for i in (0, 1, 2, 3, 4, 7)
    ] + ["model_final.pth"]
    assert "Iteration 5: no checkpoint written while steps are failing" in caplog.text
    assert record.weights[8].abs().max() < 10
    # The log holds each step's own loss, the refused ones included.
    losses = dict((i, v) for v, i in trainer.storage.history("total_loss").values())
    assert losses[5] > 1e6 and losses[6] > 1e6 and losses[7] < 100


def test_giving_up_names_the_last_good_checkpoint(tmp_path):
    trainer = make_trainer(Regression(nan_at=range(3, 10)), loss_guard=LossGuard(max_consecutive=3))
    checkpointer = GCNetCheckpointer(trainer.model, str(tmp_path), trainer=trainer)
    trainer.checkpointer = checkpointer
    trainer.register_hooks([GuardedPeriodicCheckpointer(checkpointer, period=2)])
    with pytest.raises(FloatingPointError) as error:
        trainer.train(0, 10)
    assert str(error.value) == (
        f"Iteration 5: loss is nan; 3 bad steps in a row, stopping. The last checkpoint written before the failures is "
        f"{tmp_path / 'model_0000001.pth'}. Try a lower learning rate (optimizer.lr), gradient clipping "
        "(train.clip_grad.enabled=True), or a longer warm-up"
    )
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == ["model_0000001.pth"]
