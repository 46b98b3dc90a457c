"""SGD as in the paper (Section 5.1): lr 0.02 for 16 images per batch, momentum 0.9, weight
decay 1e-4 on every parameter (norm layers included, as the reference implementation)."""

from gcnet.engine.config import get_detectron2_config

SGD = get_detectron2_config("common/optim.py").SGD
SGD.params.weight_decay_norm = None
