"""Cityscapes semantic segmentation evaluation with the official cityscapesscripts.

detectron2's ``CityscapesSemSegEvaluator`` imports a module that does not exist. This one
computes the metrics of ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``
(class and category IoU and iIoU, with its label table, instance weights and scoring
functions) on a confusion matrix and instance statistics accumulated here: the script's own
pair loop exits the process on bad input and calls ``np.in1d``, which NumPy 2.4 removed.
Workers encode their predictions as PNG in memory and the main process gathers them, so it
works in multi-process (also multi-machine) inference and on CPU.
"""

import io
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Tuple

import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cityscapes_eval
import numpy as np
from cityscapesscripts.helpers.labels import category2labels, id2label, name2label, trainId2label
from PIL import Image

from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from gcnet.data.cityscapes import ID_TO_TRAIN_ID, IMAGE_SUFFIX, LABEL_ID_SUFFIX

__all__ = ["CityscapesPixelLevelEvaluator"]

logger = logging.getLogger(__name__)


def _encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class CityscapesPixelLevelEvaluator(DatasetEvaluator):
    """Class and category IoU / iIoU of Cityscapes predictions (``output["sem_seg"]``: K x H x W
    scores over the train ids), with cityscapesscripts.

    The ground truth is the ``*_gtFine_labelIds.png`` (and, for iIoU, the
    ``*_gtFine_instanceIds.png``) beside each input's ``*_gtFine_labelTrainIds.png``, so only
    the images that were processed are evaluated. Without instance maps iIoU is not reported.

    Results, under the key "cityscapes" (detectron2's ``SemSegEvaluator`` reports under
    "sem_seg"), in percent: ``IoU``, ``iIoU`` (averages over the 19 evaluated classes, those absent
    from both prediction and ground truth left out), ``IoU_sup``, ``iIoU_sup`` (category
    averages), and ``IoU-<class>``, ``iIoU-<class>`` (classes with instances) and
    ``IoU_sup-<category>``.
    """

    def __init__(self, dataset_name: str):
        self._dataset_name = dataset_name
        self._train_to_label_id = np.full(256, 255, dtype=np.uint8)
        for train_id, label in trainId2label.items():
            if 0 <= train_id < 255 and not label.ignoreInEval:
                self._train_to_label_id[train_id] = label.id
        self.reset()

    def reset(self):
        self._predictions: List[Tuple[str, bytes]] = []

    def process(self, inputs, outputs):
        for input, output in zip(inputs, outputs):
            label_ids = self._ground_truth(input)
            prediction = output["sem_seg"].argmax(dim=0).cpu().numpy().astype(np.uint8)
            self._predictions.append((label_ids, _encode_png(self._train_to_label_id[prediction])))

    @staticmethod
    def _ground_truth(input: Dict) -> str:
        image = input["file_name"]
        if not image.endswith(IMAGE_SUFFIX):
            raise ValueError(f"{image}: expected a Cityscapes image named *{IMAGE_SUFFIX}")
        city_dir, name = os.path.split(image)
        split_dir, city = os.path.split(city_dir)
        gt_split = split_dir.replace(f"{os.sep}leftImg8bit{os.sep}", f"{os.sep}gtFine{os.sep}")
        return os.path.join(gt_split, city, name[: -len(IMAGE_SUFFIX)] + LABEL_ID_SUFFIX)

    @staticmethod
    def _read_ground_truth(label_ids: str, prediction: np.ndarray):
        """The label-id map (and instance map, or None) of ``label_ids``, checked against the
        prediction."""
        if not os.path.isfile(label_ids):
            raise FileNotFoundError(f"{label_ids}: Cityscapes ground truth not found")
        gt = np.asarray(Image.open(label_ids)).astype(np.int64)
        if gt.shape != prediction.shape:
            raise ValueError(
                f"{label_ids}: ground truth is {gt.shape[1]}x{gt.shape[0]} but the prediction is "
                f"{prediction.shape[1]}x{prediction.shape[0]}"
            )
        unknown = sorted(set(np.unique(gt).tolist()) - set(ID_TO_TRAIN_ID))
        if unknown:
            raise ValueError(f"{label_ids}: values {unknown} are not Cityscapes label ids")
        instances = label_ids.replace("labelIds", "instanceIds")
        return gt, (np.asarray(Image.open(instances)) if os.path.isfile(instances) else None)

    @staticmethod
    def _add_instances(stats: Dict, prediction: np.ndarray, instances: np.ndarray) -> None:
        """cityscapesscripts' instance-level statistics of one image (for iIoU)."""
        category_masks = {
            category: np.isin(prediction, entry["labelIds"]) for category, entry in stats["categories"].items()
        }
        for instance_id in np.unique(instances[instances > 1000]):
            label = id2label[int(instance_id // 1000)]
            if label.ignoreInEval:
                continue
            mask = instances == instance_id
            size = int(np.count_nonzero(mask))
            weight = cityscapes_eval.args.avgClassSize[label.name] / size
            tp = int(np.count_nonzero(prediction[mask] == label.id))
            entries = [(stats["classes"][label.name], tp)]
            if label.category in stats["categories"]:
                category_tp = int(np.count_nonzero(mask & category_masks[label.category]))
                entries.append((stats["categories"][label.category], category_tp))
            for entry, hits in entries:
                entry["tp"] += hits
                entry["fn"] += size - hits
                entry["tpWeighted"] += hits * weight
                entry["fnWeighted"] += (size - hits) * weight

    def evaluate(self):
        gathered = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return {}
        predictions = dict(pair for part in gathered for pair in part)
        if not predictions:
            logger.warning(f"{self._dataset_name}: CityscapesPixelLevelEvaluator received no predictions")
            return {}
        logger.info(f"{self._dataset_name}: evaluating {len(predictions)} images with cityscapesscripts")
        args = cityscapes_eval.args
        confusion = cityscapes_eval.generateMatrix(args).astype(np.int64)
        instance_stats = cityscapes_eval.generateInstanceStats(args)
        with_instances = True
        for label_ids, png in sorted(predictions.items()):
            prediction = np.asarray(Image.open(io.BytesIO(png))).astype(np.int64)
            gt, instances = self._read_ground_truth(label_ids, prediction)
            n = confusion.shape[0]
            confusion += np.bincount((gt * n + prediction).ravel(), minlength=n * n).reshape(n, n)
            if instances is None:
                with_instances = False
            else:
                self._add_instances(instance_stats, prediction, instances)

        eval_ids = [label.id for label in trainId2label.values() if not label.ignoreInEval]
        classes = {id2label[i].name: cityscapes_eval.getIouScoreForLabel(i, confusion, args) for i in eval_ids}
        categories = {c: cityscapes_eval.getIouScoreForCategory(c, confusion, args) for c in category2labels}
        scores = OrderedDict(
            IoU=cityscapes_eval.getScoreAverage(classes, args),
            IoU_sup=cityscapes_eval.getScoreAverage(categories, args),
        )
        if with_instances:
            class_inst = {
                id2label[i].name: cityscapes_eval.getInstanceIouScoreForLabel(i, confusion, instance_stats, args)
                for i in eval_ids
            }
            category_inst = {
                c: cityscapes_eval.getInstanceIouScoreForCategory(c, confusion, instance_stats, args)
                for c in category2labels
            }
            scores["iIoU"] = cityscapes_eval.getScoreAverage(class_inst, args)
            scores["iIoU_sup"] = cityscapes_eval.getScoreAverage(category_inst, args)
        scores.update((f"IoU-{name}", value) for name, value in classes.items())
        if with_instances:
            scores.update(
                (f"iIoU-{name}", value) for name, value in class_inst.items() if name2label[name].hasInstances
            )
        scores.update((f"IoU_sup-{name}", value) for name, value in categories.items())
        # Percent, as Python floats (cityscapesscripts returns NumPy scalars).
        scores = OrderedDict((key, 100.0 * float(value)) for key, value in scores.items())
        return OrderedDict(cityscapes=scores)
