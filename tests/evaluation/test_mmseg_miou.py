"""mmsegmentation's mIoU (rule sem_seg_miou): MMSegSemSegEvaluator against mmsegmentation's
``intersect_and_union`` / ``total_area_to_metrics`` formulas, on CamVid's label maps with a class
only predicted and a class neither predicted nor labelled."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator

import gcnet.model_zoo as zoo
from gcnet.evaluation import MMSegSemSegEvaluator

from ..helpers import REPO_ROOT
from ..model_zoo.upstream_reference import mmseg_iou

# CamVid's 11 classes and two that none of its images has; its unlabelled pixels (11) ignored.
CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian", "bicyclist"]
CLASSES += ["animal", "train"]
IGNORE = 255
DATASET = "test_camvid_mmseg_miou"


def read_label(file_name: str, dtype=int) -> np.ndarray:
    label = np.asarray(Image.open(file_name)).astype(dtype)
    return np.where(label == 11, IGNORE, label)


@pytest.fixture
def camvid(shared_data):
    """Three CamVid val label maps as a registered dataset (file names are the keys the
    evaluator reads the labels by)."""
    names = ["0016E5_07959.png", "0016E5_07961.png", "0016E5_07963.png"]
    camvid = shared_data / "camvid"
    dicts = [{"file_name": str(camvid / "val" / n), "sem_seg_file_name": str(camvid / "valannot" / n)} for n in names]
    DatasetCatalog.register(DATASET, lambda: dicts)
    MetadataCatalog.get(DATASET).set(stuff_classes=CLASSES, ignore_label=IGNORE)
    yield dicts
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


def one_hot(prediction: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(prediction), len(CLASSES)).permute(2, 0, 1).float()


def predictions_for(labels):
    """The labels, wrong on a band of each image: "animal" (in no label map) on the first, cars
    on the others; unlabelled pixels predicted as road; "train" nowhere."""
    predictions = []
    for i, label in enumerate(labels):
        prediction = np.where(label == IGNORE, 3, label).astype(np.int64)
        prediction[40 * i : 40 * i + 30] = 11 if i == 0 else 8
        predictions.append(prediction)
    return predictions


def run(evaluator, dicts, predictions):
    evaluator.reset()
    for d, prediction in zip(dicts, predictions):
        evaluator.process([d], [{"sem_seg": one_hot(prediction)}])
    return evaluator.evaluate()["sem_seg"]


def test_miou_counts_classes_only_predicted(camvid):
    labels = [read_label(d["sem_seg_file_name"]) for d in camvid]
    assert set(np.unique(np.concatenate([x.ravel() for x in labels]))) == set(range(11)) | {IGNORE}
    predictions = predictions_for(labels)
    miou, ious = mmseg_iou(list(zip(predictions, labels)), len(CLASSES), IGNORE)
    results = run(MMSegSemSegEvaluator(DATASET, distributed=False, sem_seg_loading_fn=read_label), camvid, predictions)
    assert results["mIoU"] == pytest.approx(100 * miou, abs=1e-9)
    assert results["IoU-animal"] == 0 and math.isnan(results["IoU-train"])
    for name, iou in zip(CLASSES, ious):
        assert results[f"IoU-{name}"] == pytest.approx(100 * iou, nan_ok=True, abs=1e-9), name
    detectron2 = run(SemSegEvaluator(DATASET, distributed=False, sem_seg_loading_fn=read_label), camvid, predictions)
    assert detectron2["mIoU"] == pytest.approx(results["mIoU"] * 12 / 11)  # the 11 labelled classes only
    for key in ("fwIoU", "mACC", "pACC"):
        assert results[key] == pytest.approx(detectron2[key]), key


def test_mmseg_configs_evaluate_with_it():
    """Every mmseg zoo config (one per dataset and crop size here); detectron2's evaluator stays
    in gcnet's own Cityscapes configs."""
    for name in ["mmseg/gcnet_r50-d8_769x769_40k_cityscapes", "mmseg/gcnet_r101-d8_512x1024_80k_cityscapes"]:
        assert zoo.get_config(name).dataloader.evaluator[0]._target_ is MMSegSemSegEvaluator, name
    for name in ["mmseg/gcnet_r50-d8_512x512_20k_voc12aug", "mmseg/gcnet_r101-d8_512x512_160k_ade20k"]:
        assert zoo.get_config(name).dataloader.evaluator._target_ is MMSegSemSegEvaluator, name
    own = LazyConfig.load(str(REPO_ROOT / "configs/Cityscapes-SemanticSegmentation/gc_head_R_101_D8_769x769_60k.py"))
    assert own.dataloader.evaluator[0]._target_ is SemSegEvaluator
