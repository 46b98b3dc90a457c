"""Learning-rate multipliers for detectron2's ``LRScheduler`` hook, beside those of
``detectron2.solver`` (fvcore's ``ParamScheduler`` family): the Cityscapes recipes' "poly"."""

from fvcore.common.param_scheduler import ParamScheduler

__all__ = ["PolyParamScheduler"]


class PolyParamScheduler(ParamScheduler):
    """The "poly" policy of the paper's Cityscapes recipe (Section 5.4, after CCNet):
    ``(1 - end_value) * (1 - t) ** power + end_value`` at training progress t in [0, 1].

    ``end_value`` is the final multiplier: 0 in the paper; mmsegmentation's ``min_lr=1e-4``
    with lr 0.01 is ``end_value=0.01``.
    """

    def __init__(self, power: float = 0.9, end_value: float = 0.0):
        if power <= 0 or not 0 <= end_value < 1:
            raise ValueError(f"power must be > 0 and end_value in [0, 1), got {power}, {end_value}")
        self.power = power
        self.end_value = end_value

    def __call__(self, where: float) -> float:
        return (1 - self.end_value) * (1 - where) ** self.power + self.end_value
