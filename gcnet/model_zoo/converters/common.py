"""What the converters share: renaming by rules, and refusing partial conversions."""

import re
from typing import Callable, Dict, Mapping, Sequence, Tuple, Union

import torch

__all__ = ["BN", "Rule", "UnconvertedKeysError", "prefix_rules", "rename", "upstream_state_dict"]

# The parameters and buffers of an upstream BatchNorm (num_batches_tracked is dropped).
BN = r"(weight|bias|running_mean|running_var)"
# (regex on the upstream key, target name or function of the match)
Rule = Tuple[str, Union[str, Callable[[re.Match], str]]]


class UnconvertedKeysError(ValueError):
    """Some upstream keys have no place in the converted checkpoint."""

    def __init__(self, converter: str, keys: Mapping[str, tuple]):
        listing = ", ".join(f"{k} {list(shape)}" for k, shape in sorted(keys.items()))
        super().__init__(f"{converter}: {len(keys)} upstream keys could not be converted: {listing}")
        self.keys = dict(keys)


def upstream_state_dict(checkpoint: Mapping) -> Mapping[str, torch.Tensor]:
    """The state dict of an OpenMMLab checkpoint ({"state_dict": ..., "meta": ...}) or of a bare
    state dict."""
    return checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint


def rename(name: str, state_dict: Mapping[str, torch.Tensor], rules: Sequence[Rule]) -> Dict[str, torch.Tensor]:
    """``state_dict`` under the names the first matching rule gives each key; a key that no
    rule matches stops the conversion with :class:`UnconvertedKeysError`."""
    converted, unmatched = {}, {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):  # a BatchNorm step counter, not a weight
            continue
        for pattern, target in rules:
            match = re.match(pattern, key)
            if match:
                new_key = target(match) if callable(target) else match.expand(target)
                converted[new_key] = value.detach().cpu()
                break
        else:
            unmatched[key] = tuple(value.shape)
    if unmatched:
        raise UnconvertedKeysError(name, unmatched)
    return converted


def prefix_rules(rules: Sequence[Rule], upstream: str, target: str) -> list:
    """``rules`` for keys under ``upstream`` (e.g. "backbone."), renamed under ``target``
    (e.g. "backbone.bottom_up.")."""
    prefixed = []
    for pattern, name in rules:
        full_pattern = "^" + re.escape(upstream) + pattern.lstrip("^")
        if callable(name):
            prefixed.append((full_pattern, lambda m, name=name: target + name(m)))
        else:
            prefixed.append((full_pattern, target + name))
    return prefixed
