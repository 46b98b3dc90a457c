"""The "poly" learning-rate policy of the Cityscapes recipes: lr x (1 - iter / max_iter)^0.9
(Section 5.4), no warm-up."""

from detectron2.config import LazyCall as L

from gcnet.solver import PolyParamScheduler

lr_multiplier_poly = L(PolyParamScheduler)(power=0.9, end_value=0.0)
