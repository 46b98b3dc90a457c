"""detectron2's LazyConfig training settings, for the 1x schedule."""
from detectron2.model_zoo import get_config

train = get_config("common/train.py").train
train.max_iter = 90000
