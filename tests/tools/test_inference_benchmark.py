"""gcnet.apps.inference_benchmark (tools/benchmark.py inference and precision): every way of
running a detector gives the detections of the model before the fast path, and the bfloat16
report pairs bfloat16 detections with float32 ones. Their speed is the benchmark's to measure."""

import numpy as np
import pytest
import torch

from detectron2.config import LazyConfig, instantiate

from gcnet.apps import inference_benchmark as bench
from gcnet.engine import GCNetCheckpointer, InferenceOptions
from gcnet.export import detections_from_outputs
from gcnet.export.detection import DETECTION_OUTPUTS

from ..helpers import TINY_CONFIG


def test_every_way_gives_the_detections_of_the_model_before(shared_data, tmp_path):
    photo = str(shared_data / "demo" / "park_bench.jpg")
    ways = ["before: eager", "eager", "eager, channels_last", "eager, bfloat16"]  # exports: tests/tools/test_export*.py
    rows = bench.inference_rows({"tiny": (TINY_CONFIG, "")}, photo, [1], 1, ways, str(tmp_path))
    assert [(r["model"], r["threads"], r["way"]) for r in rows] == [("tiny", 1, w) for w in ways]
    assert all(r["size"] == [160, 240] and r["wall"] > 0 and r["cpu"] > 0 for r in rows)
    assert [r["matches"] for r in rows[:3]] == [True] * 3  # bfloat16 is compared, not held to the export's tolerance
    assert all(r["relative_box"] <= 1e-5 for r in rows[:3]) and rows[0]["relative_box"] == 0
    assert not (tmp_path / "tiny").exists()  # nothing exported unless an export is timed
    table = bench.inference_table(rows).splitlines()
    assert table[0] == "| threads | way | tiny wall (CPU) s | x before: eager | tiny / tiny | detections |"
    assert table[2].startswith("| 1 | before: eager | ") and table[2].endswith(" | 1.00 | 1.000 | match |")
    with pytest.raises(ValueError, match=r"^Unknown ways \['eager, fp16'\]; choose from before: eager, "):
        bench.inference_rows({"missing": ("no/such/config.py", "")}, photo, [1], 1, ["eager, fp16"], str(tmp_path))


def test_precision_rows_pair_bfloat16_with_float32(shared_data, tmp_path):
    cfg = LazyConfig.load(TINY_CONFIG)
    torch.manual_seed(0)
    GCNetCheckpointer(instantiate(cfg.model), save_dir=str(tmp_path)).save("weights")
    cfg.train.init_checkpoint = str(tmp_path / "weights.pth")  # both predictors load the same weights
    images = [str(shared_data / "demo" / "park_bench.jpg")]
    (row,) = bench.precision_rows(cfg, images, score_threshold=0.0)
    # A random model: close scores everywhere, so bfloat16 keeps other detections among its 100.
    assert row["image"] == "park_bench.jpg" and row["float32"] == row["bfloat16"] == 100 and 0 < row["paired"] <= 100
    assert 0.5 <= row["min_box_iou"] <= 1 and 0 <= row["max_score_difference"] < 1 and 0 <= row["min_mask_iou"] <= 1
    table = bench.precision_table([row]).splitlines()
    assert len(table) == 3 and table[2].startswith("| park_bench.jpg | 100 | 100 | ")
    float32 = InferenceOptions(channels_last=False, compile=False)
    same = bench.precision_rows(cfg, images, score_threshold=0.0, compared=float32)
    assert same == [
        dict(
            image="park_bench.jpg",
            float32=100,
            bfloat16=100,
            paired=100,
            min_box_iou=1.0,
            max_score_difference=0.0,
            min_mask_iou=1.0,
        )
    ]


def test_pairing_by_overlap():
    from detectron2.structures import Boxes, Instances

    def detections(boxes, scores, classes):
        return Instances(
            (50, 50),
            pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
            scores=torch.tensor(scores),
            pred_classes=torch.tensor(classes),
        )

    reference = detections([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [0, 0, 1])
    other = detections([[20, 20, 30, 31], [0, 0, 10, 11], [0, 0, 30, 30]], [0.8, 0.9, 0.7], [0, 0, 1])
    pairs = bench._pair_by_overlap(reference, other)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)] and pairs[0][2] == pytest.approx(100 / 110)


def test_detections_from_outputs_leaves_its_inputs_as_they_are(shared_data):
    """The postprocessing scales boxes in place: the same outputs give the same detections twice."""
    boxes, masks = np.array([[10.0, 20.0, 30.0, 40.0]], np.float32), np.full((1, 1, 28, 28), 0.9, np.float32)
    outputs = [boxes, np.array([0]), masks, np.array([0.5], np.float32), np.array([80, 120])]
    kept = [o.copy() for o in outputs]
    first, second = (detections_from_outputs(outputs, DETECTION_OUTPUTS, 160, 240) for _ in range(2))
    assert all(np.array_equal(a, b) for a, b in zip(outputs, kept))
    assert torch.equal(first.pred_boxes.tensor, second.pred_boxes.tensor)
    assert torch.equal(first.pred_boxes.tensor, torch.tensor([[20.0, 40.0, 60.0, 80.0]]))
