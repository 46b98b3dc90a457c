"""Predictions for many images, written as machine-readable files (COCO results, label maps),
in shards that make a run resumable and spread it over the processes of a launch
(``tools/predict.py``)."""

from .folder import RESULT_FILES, PredictionFolder
from .loader import ImageFileDataset, build_image_loader, shard_batches
from .outputs import dataset_category_ids, instance_results, label_map
from .plan import PredictionPlan, config_digest, read_image_list, write_image_list
from .run import (
    PredictionOptions,
    PredictionRun,
    plan_run,
    shard_state,
)

__all__ = [
    "PredictionFolder",
    "PredictionOptions",
    "PredictionPlan",
    "PredictionRun",
    "ImageFileDataset",
    "RESULT_FILES",
    "build_image_loader",
    "config_digest",
    "dataset_category_ids",
    "shard_state",
    "instance_results",
    "label_map",
    "plan_run",
    "read_image_list",
    "shard_batches",
    "write_image_list",
]
