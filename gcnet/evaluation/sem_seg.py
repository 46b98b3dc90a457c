"""Semantic segmentation metrics as mmsegmentation computes them."""

import itertools
import json
import os
from collections import OrderedDict

import numpy as np

from detectron2.data import MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

__all__ = ["MMSegSemSegEvaluator", "iou_metrics"]


def iou_metrics(confusion: np.ndarray) -> dict:
    """mmsegmentation's ``total_area_to_metrics`` on a (K, K) confusion matrix (rows the
    predicted class, columns the ground truth, ignored pixels left out): per-class IoU
    (intersection over union, NaN where the class is neither predicted nor in the ground truth,
    so 0 for a class only predicted) and accuracy (NaN where the class is not in the ground
    truth), their means over the classes that are not NaN, and the overall pixel accuracy."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, labelled = confusion.sum(axis=1).astype(np.float64), confusion.sum(axis=0).astype(np.float64)
    union = predicted + labelled - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, accuracy = tp / union, tp / labelled
    in_ground_truth = labelled > 0
    return dict(
        iou=iou,
        accuracy=accuracy,
        mean_iou=np.nanmean(iou) if np.any(union > 0) else np.nan,
        mean_accuracy=np.nanmean(accuracy) if np.any(in_ground_truth) else np.nan,
        pixel_accuracy=tp.sum() / labelled.sum() if labelled.sum() else np.nan,
        frequency_weighted_iou=np.nansum(iou[in_ground_truth] * labelled[in_ground_truth]) / labelled.sum()
        if labelled.sum()
        else np.nan,
    )


class MMSegSemSegEvaluator(SemSegEvaluator):
    """detectron2's ``SemSegEvaluator`` (same arguments, same result keys under "sem_seg") with
    mmsegmentation's mIoU (``IoUMetric``, v0.x ``mean_iou``): the mean over the classes that
    are predicted or in the ground truth, a class only predicted counting with IoU 0, where
    detectron2 averages over the classes of the ground truth alone. They agree when every class
    occurs in the ground truth, as on the full val sets. ``IoU-<class>`` is 0 for a class only
    predicted; mACC, pACC and fwIoU are as detectron2's; boundary IoU is not computed.
    """

    def __init__(self, dataset_name: str, distributed: bool = True, output_dir=None, **kwargs):
        super().__init__(dataset_name, distributed, output_dir, **kwargs)
        meta = MetadataCatalog.get(dataset_name)
        self.dataset_name, self.distributed, self.output_dir = dataset_name, distributed, output_dir
        self.class_names, self.ignore_label = list(meta.stuff_classes), meta.ignore_label

    def reset(self):
        num_classes = len(self.class_names)
        self.confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
        self.predictions = []

    def process(self, inputs, outputs):
        """Adds each prediction's (``output["sem_seg"]``: K x H x W scores) pixels to the
        confusion matrix against its label map, the ignored pixels apart."""
        num_classes = len(self.class_names)
        for input, output in zip(inputs, outputs):
            prediction = output["sem_seg"].argmax(dim=0).cpu().numpy().astype(np.int64)
            label = self.sem_seg_loading_fn(self.input_file_to_gt_file[input["file_name"]], dtype=int)
            if label.shape != prediction.shape:
                raise ValueError(
                    f"{self.input_file_to_gt_file[input['file_name']]}: the label map is {label.shape[1]}x"
                    f"{label.shape[0]}, the prediction {prediction.shape[1]}x{prediction.shape[0]}"
                )
            label = np.where(label == self.ignore_label, num_classes, label)
            pairs = (num_classes + 1) * prediction.reshape(-1) + label.reshape(-1)
            self.confusion += np.bincount(pairs, minlength=self.confusion.size).reshape(self.confusion.shape)
            self.predictions.extend(self.encode_json_sem_seg(prediction, input["file_name"]))

    def evaluate(self):
        if self.distributed:
            comm.synchronize()
            confusions, predictions = comm.all_gather(self.confusion), comm.all_gather(self.predictions)
            if not comm.is_main_process():
                return None
            self.confusion, self.predictions = sum(confusions), list(itertools.chain(*predictions))
        if self.output_dir:
            PathManager.mkdirs(self.output_dir)
            with PathManager.open(os.path.join(self.output_dir, "sem_seg_predictions.json"), "w") as f:
                f.write(json.dumps(self.predictions))
        metrics = iou_metrics(self.confusion[:-1, :-1])
        results = {"mIoU": 100 * metrics["mean_iou"], "fwIoU": 100 * metrics["frequency_weighted_iou"]}
        results.update({f"IoU-{name}": 100 * v for name, v in zip(self.class_names, metrics["iou"])})
        results.update(mACC=100 * metrics["mean_accuracy"], pACC=100 * metrics["pixel_accuracy"])
        results.update({f"ACC-{name}": 100 * v for name, v in zip(self.class_names, metrics["accuracy"])})
        return OrderedDict(sem_seg=results)
