"""CityscapesPixelLevelEvaluator against known answers, on CamVid in the Cityscapes layout."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from gcnet.data import create_train_id_labels, load_checked_cityscapes_semantic
from gcnet.engine import launch
from gcnet.evaluation import CityscapesPixelLevelEvaluator

from ..helpers import write_camvid_as_cityscapes

TRAIN_ID_NAMES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]


@pytest.fixture
def val_dicts(shared_data, tmp_path):
    root = write_camvid_as_cityscapes(shared_data / "camvid", tmp_path, {"val": 3})
    create_train_id_labels(str(root / "gtFine"))
    return load_checked_cityscapes_semantic(str(root / "leftImg8bit" / "val"), str(root / "gtFine" / "val"))


def ground_truth(d):
    return np.asarray(Image.open(d["sem_seg_file_name"])).astype(np.int64)


def scores_for(prediction):
    """One-hot class scores (K, H, W) whose argmax is ``prediction`` (255 -> class 0)."""
    labels = torch.as_tensor(np.where(prediction == 255, 0, prediction))
    return torch.nn.functional.one_hot(labels, 19).permute(2, 0, 1).float()


def evaluate(dicts, predictions):
    evaluator = CityscapesPixelLevelEvaluator("cityscapes_camvid_val")
    evaluator.reset()
    for d, prediction in zip(dicts, predictions):
        evaluator.process([d], [{"sem_seg": scores_for(prediction)}])
    return evaluator.evaluate()["cityscapes"]


def independent_iou(gts, predictions):
    """Per-class IoU over all images, pixels with ground truth 255 left out."""
    gt, pred = np.concatenate([g.ravel() for g in gts]), np.concatenate([p.ravel() for p in predictions])
    valid = gt != 255
    ious = {}
    for c, name in enumerate(TRAIN_ID_NAMES):
        tp = np.sum(valid & (gt == c) & (pred == c))
        fp = np.sum(valid & (gt != c) & (pred == c))
        fn = np.sum(valid & (gt == c) & (pred != c))
        if tp + fp + fn:
            ious[name] = 100 * tp / (tp + fp + fn)
    return ious


def test_perfect_prediction_scores_100(val_dicts):
    results = evaluate(val_dicts, [ground_truth(d) for d in val_dicts])
    assert results["IoU"] == pytest.approx(100.0)
    present = {TRAIN_ID_NAMES[c] for d in val_dicts for c in np.unique(ground_truth(d)) if c != 255}
    for name in TRAIN_ID_NAMES:
        value = results[f"IoU-{name}"]
        assert value == pytest.approx(100.0) if name in present else np.isnan(value), name
    assert results["IoU_sup"] == pytest.approx(100.0)
    assert "iIoU" in results  # instance maps exist (without instances: NaN)


def test_changed_pixels_match_independent_iou(val_dicts):
    gts = [ground_truth(d) for d in val_dicts]
    predictions = [g.copy() for g in gts]
    road = predictions[0] == 0
    predictions[0][road & (np.arange(road.shape[1]) < 200)[None, :]] = 2  # road -> building
    predictions[1][100:150, 50:250] = 13  # a block -> car
    predictions[2][gts[2] == 10] = 8  # sky -> vegetation
    results = evaluate(val_dicts, predictions)
    expected = independent_iou(gts, predictions)
    for name, value in expected.items():
        assert results[f"IoU-{name}"] == pytest.approx(value, abs=1e-9), name
    assert results["IoU"] == pytest.approx(np.mean(list(expected.values())))
    assert results["IoU-road"] < 100 and results["IoU-sky"] < 100 and results["IoU-car"] < 100


def test_without_instance_maps_no_iiou(val_dicts):
    for d in val_dicts:
        os.remove(d["sem_seg_file_name"].replace("labelTrainIds", "instanceIds"))
    results = evaluate(val_dicts, [ground_truth(d) for d in val_dicts])
    assert results["IoU"] == pytest.approx(100.0) and "iIoU" not in results


def test_size_mismatch_names_the_file(val_dicts):
    small = ground_truth(val_dicts[0])[:100]
    with pytest.raises(
        ValueError, match=r"_gtFine_labelIds.png: ground truth is 480x360 but the prediction is 480x100"
    ):
        evaluate(val_dicts[:1], [small])


def _evaluate_shard(dicts, out_dir):
    from detectron2.utils import comm

    evaluator = CityscapesPixelLevelEvaluator("cityscapes_camvid_val")
    evaluator.reset()
    for d in dicts[comm.get_rank() :: comm.get_world_size()]:
        prediction = ground_truth(d)
        prediction[:20] = 1
        evaluator.process([d], [{"sem_seg": scores_for(prediction)}])
    results = evaluator.evaluate()
    if comm.is_main_process():
        torch.save(dict(results["cityscapes"]), os.path.join(out_dir, "results.pt"))


def test_two_process_evaluation_equals_single_process(val_dicts, tmp_path, free_port):
    launch(_evaluate_shard, 2, dist_url=f"tcp://127.0.0.1:{free_port}", args=(val_dicts, str(tmp_path)))
    distributed = torch.load(tmp_path / "results.pt")
    predictions = []
    for d in val_dicts:
        prediction = ground_truth(d)
        prediction[:20] = 1
        predictions.append(prediction)
    single = evaluate(val_dicts, predictions)
    assert distributed.keys() == single.keys()
    for key, value in single.items():
        assert distributed[key] == pytest.approx(value, nan_ok=True), key
