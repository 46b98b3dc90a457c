"""Whether a converted checkpoint fills a model exactly."""

from typing import List

from torch import nn

__all__ = ["checkpoint_mismatches"]


def checkpoint_mismatches(model: nn.Module, checkpoint: dict) -> List[str]:
    """What loading ``checkpoint`` ({"model": state dict, ...}) into ``model`` by name would leave
    missing, unexpected or of the wrong shape (BatchNorm step counters aside); empty if it
    fills every parameter and buffer."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(".num_batches_tracked")}
    given = {k: tuple(v.shape) for k, v in checkpoint["model"].items()}
    problems = [f"missing {k}" for k in expected if k not in given]
    problems += [f"unexpected {k}" for k in given if k not in expected and not k.endswith(".num_batches_tracked")]
    problems += [
        f"shape of {k}: {given[k]} in the checkpoint, {shape} in the model"
        for k, shape in expected.items()
        if k in given and given[k] != shape
    ]
    return problems
