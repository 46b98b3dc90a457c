"""Whether a converted checkpoint fills a model exactly."""
from typing import List

from torch import nn

__all__ = ["checkpoint_mismatches"]


def checkpoint_mismatches(model: nn.Module, checkpoint: dict) -> List[str]:
    """What loading ``checkpoint`` ({"model": state dict, ...}) into ``model`` would leave
    missing, unexpected or of the wrong shape (BatchNorm step counters aside); empty if it
    fills every parameter."""
    from gcnet.engine.checkpoint import GCNetCheckpointer

    incompatible = GCNetCheckpointer(model)._load_model(dict(checkpoint))
    wrong_shape = {k for k, *_ in incompatible.incorrect_shapes}  # also missing: named once, with the shapes
    problems = [f"missing {k}" for k in incompatible.missing_keys if k not in wrong_shape]
    problems += [f"unexpected {k}" for k in incompatible.unexpected_keys]
    problems += [f"shape of {k}: {a} in the checkpoint, {b} in the model" for k, a, b in incompatible.incorrect_shapes]
    return problems
