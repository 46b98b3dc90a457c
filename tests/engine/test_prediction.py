"""gcnet.engine.prediction in one process: the results of a run are those of detectron2's
COCOEvaluator (train_net.py --eval-only) and give its AP through pycocotools; label maps are
the model's classes; the output folder refuses what would mix two runs; a stop says how to
continue."""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog

from gcnet.data import ImageRecord, read_image, register_checked_coco_instances
from gcnet.engine import CheckpointMismatchError, GCNetCheckpointer, Predictor, exit_on_stop
from gcnet.engine.defaults import evaluate
from gcnet.engine.prediction import (
    ImageFileDataset,
    PredictionFolder,
    PredictionPlan,
    dataset_category_ids,
    label_map,
    plan_run,
    shard_batches,
    shard_state,
)

from ..helpers import CONFIGS, TINY_EVAL_CONFIG, predict_in_process, randomize_, tool_env

# Holds the lock of the folder argv[1] until killed.
HOLD_LOCK = (
    "import sys, time; from gcnet.utils.run_lock import lock_folder; lock_folder(sys.argv[1]); "
    "print('locked', flush=True); time.sleep(60)"
)
SEGMENTATION = CONFIGS / "Cityscapes-SemanticSegmentation" / "mmseg_gcnet_R_50_D8_512x1024_40k.py"


def saved_model(cfg, folder, seed=0):
    """``cfg`` with ``train.init_checkpoint`` a checkpoint of its model with random weights."""
    torch.manual_seed(seed)
    GCNetCheckpointer(instantiate(cfg.model), save_dir=str(folder)).save("model")
    cfg.train.init_checkpoint = str(folder / "model.pth")
    return cfg


@contextlib.contextmanager
def registered(name, json_file, image_root):
    """A COCO-format dataset registered under ``name`` for the block."""
    register_checked_coco_instances(name, {}, str(json_file), str(image_root))
    try:
        yield name
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def pseudo_ground_truth(coco_file, predictions, path, per_image=2):
    """``coco_file`` whose annotations are the ``per_image`` best ``predictions`` of each image:
    a ground truth that the model's predictions match well (AP far from 0)."""
    data = json.loads(coco_file.read_text())
    best = sorted(predictions, key=lambda p: (p["image_id"], -p["score"]))
    kept = [p for i, p in enumerate(best) if i < per_image or best[i - per_image]["image_id"] != p["image_id"]]
    data["annotations"] = [
        dict(
            id=i,
            image_id=p["image_id"],
            category_id=p["category_id"],
            bbox=p["bbox"],
            segmentation=p["segmentation"],
            area=float(mask_util.area(p["segmentation"])),
            iscrowd=0,
        )
        for i, p in enumerate(kept, start=1)
    ]
    path.write_text(json.dumps(data))
    return path


def test_results_are_the_evaluators_and_give_its_ap(shared_data, tmp_path):
    """The same images, weights and config through train_net.py --eval-only's evaluation
    (detectron2's COCOEvaluator): the same results, and pycocotools gives them the same AP."""
    cfg = saved_model(LazyConfig.load(TINY_EVAL_CONFIG), tmp_path)
    cfg.model.proposal_generator.post_nms_topk = [1000, 100]
    cfg.dataloader.test.num_workers = 0
    cfg.dataloader.evaluator.output_dir = str(tmp_path / "evaluation")
    images = shared_data / "balloon" / "val"
    balloon = json.loads((shared_data / "balloon" / "annotations" / "balloon_instances_val.json").read_text())
    balloon["images"] = [image for image in balloon["images"] if image["id"] in (2, 5, 7, 11)]  # ids not 1..N
    coco_file = tmp_path / "balloon_val_4.json"
    coco_file.write_text(json.dumps(balloon))
    counts = predict_in_process(cfg, [coco_file], tmp_path / "out", num_workers=1, image_root=str(images), shard_size=3)
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert counts == dict(images=4, unreadable=0, predictions=4 * 5)
    assert sorted({p["image_id"] for p in predictions}) == [2, 5, 7, 11]
    ground_truth = pseudo_ground_truth(coco_file, predictions, tmp_path / "ground_truth.json")
    with registered("gcnet_test_prediction_balloon_val", ground_truth, images) as name:
        cfg.dataloader.test.dataset.names = name
        evaluated = evaluate(cfg, Predictor(cfg, device="cpu").model)
    assert predictions == json.loads((tmp_path / "evaluation" / "coco_instances_results.json").read_text())
    coco = COCO(str(ground_truth))
    for iou_type in ("bbox", "segm"):
        coco_eval = COCOeval(coco, coco.loadRes(str(tmp_path / "out" / "predictions.json")), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        assert evaluated[iou_type]["AP"] > 20
        assert coco_eval.stats[0] * 100 == pytest.approx(evaluated[iou_type]["AP"], abs=1e-9)
        assert coco_eval.stats[1] * 100 == pytest.approx(evaluated[iou_type]["AP50"], abs=1e-9)
    index = COCO(str(tmp_path / "out" / "images.json"))  # an index pycocotools reads
    assert index.dataset["categories"] == [{"id": 1, "name": "balloon"}]
    assert sorted(index.imgs) == sorted(coco.imgs)
    assert all(index.imgs[i]["file_name"] == coco.imgs[i]["file_name"] for i in index.imgs)
    assert json.loads((tmp_path / "out" / "unreadable.json").read_text()) == []
    assert sorted(os.listdir(tmp_path / "out")) == [
        "config.yaml",
        "images.json",
        "predictions.json",
        "run.json",
        "unreadable.json",
    ]


def test_label_maps_are_the_models_classes(shared_data, tmp_path):
    cfg = LazyConfig.load(str(SEGMENTATION))
    cfg.model.sem_seg_head.channels = 32
    cfg.model.auxiliary_head.channels = 16
    cfg.dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=96, max_size=128)]
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    randomize_(model.sem_seg_head, scale=0.1)  # classes that vary across the image
    GCNetCheckpointer(model, save_dir=str(tmp_path)).save("model")
    cfg.train.init_checkpoint = str(tmp_path / "model.pth")
    photos = [shared_data / "camvid" / "val" / name for name in ("0016E5_07959.png", "0016E5_07961.png")]
    predictor = Predictor(cfg, device="cpu")
    probabilities = [predictor(read_image(str(photo)))["sem_seg"] for photo in photos]
    threshold = float(probabilities[0].max(dim=0).values.median())  # half of the first image's pixels are ignored
    counts = predict_in_process(cfg, photos, tmp_path / "out", confidence_threshold=threshold, batch_size=2)
    index = json.loads((tmp_path / "out" / "images.json").read_text())
    assert counts == dict(images=2, unreadable=0) and not (tmp_path / "out" / "predictions.json").exists()
    assert index["ignore_label"] == 255 and [c["id"] for c in index["categories"]] == list(range(19))
    assert index["categories"][0] == {"id": 0, "name": "road"}
    for image_id, (photo, image, probability) in enumerate(zip(photos, index["images"], probabilities), start=1):
        assert image == dict(
            id=image_id, file_name=str(photo), height=360, width=480, sem_seg_file_name=f"sem_seg/000000/{image_id}.png"
        )
        written = cv2.imread(str(tmp_path / "out" / image["sem_seg_file_name"]), cv2.IMREAD_UNCHANGED)
        confidence, classes = probability.max(dim=0)
        expected = np.where(confidence.numpy() < threshold, 255, classes.numpy())
        assert written.dtype == np.uint8 and np.array_equal(written, expected)
        assert 0 < (written == 255).sum() < written.size and len(np.unique(written)) > 2


def test_label_maps_of_more_than_255_classes_are_16_bit():
    assert label_map(torch.ones(255, 1, 1) / 255).dtype == np.uint8  # classes 0..254, and 255 to ignore
    probabilities = torch.zeros(256, 2, 3)
    probabilities[255, 0, 0] = probabilities[7, 1, 2] = 1
    labels = label_map(probabilities, threshold=0.5)
    assert labels.dtype == np.uint16 and labels[0, 0] == 255 and labels[1, 2] == 7 and labels[0, 1] == 65535


def test_weights_that_are_not_the_models_are_refused(tmp_path):
    cfg = LazyConfig.load(TINY_EVAL_CONFIG)
    with pytest.raises(ValueError, match=r"^train.init_checkpoint is empty: the model would predict with random"):
        plan_run(cfg, [str(tmp_path)], str(tmp_path / "out"), str(tmp_path / "images.jsonl"))
    weights = instantiate(cfg.model).state_dict()
    without_masks = {k: v for k, v in weights.items() if not k.startswith("roi_heads.mask_head")}
    torch.save({"model": without_masks}, tmp_path / "part.pth")
    cfg.train.init_checkpoint = str(tmp_path / "part.pth")
    with pytest.raises(
        CheckpointMismatchError, match=r"mask_head.* is missing.*give the weights of a model trained with this config"
    ):
        Predictor(cfg, device="cpu")


def test_category_ids_of_the_models_dataset(tmp_path):
    coco = dataset_category_ids(MetadataCatalog.get("coco_2017_val"))
    assert len(coco) == 80 and coco[:3] == [1, 2, 3] and coco[-1] == 90
    categories = [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}, {"id": 1, "name": "__ignore__"}]
    (tmp_path / "own.json").write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    own = MetadataCatalog.get("gcnet_test_prediction_own")
    own.set(thing_classes=["a", "b"], json_file=str(tmp_path / "own.json"))
    assert dataset_category_ids(own) == [3, 7]  # as detectron2 maps them: sorted, without placeholders
    assert dataset_category_ids(MetadataCatalog.get("gcnet_test_prediction_unknown").set(thing_classes=["a", "b"])) == [
        1,
        2,
    ]


def test_batches_are_consecutive_images_of_one_shard():
    assert shard_batches([(3, 5), (7, 2)], 2) == [(3, [0, 1]), (3, [2, 3]), (3, [4]), (7, [5, 6])]
    assert shard_batches([(0, 3)], 8) == [(0, [0, 1, 2])]


def test_unreadable_images_come_as_their_reason(tmp_path, shared_data):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    photo = str(shared_data / "demo" / "park_bench.jpg")
    records = [
        ImageRecord(1, str(tmp_path / "missing.jpg"), "missing.jpg"),
        ImageRecord(2, str(tmp_path / "broken.jpg"), "broken.jpg"),
        ImageRecord(3, photo, "p.jpg"),
    ]
    dataset = ImageFileDataset(records, lambda image: {"shape": image.shape})
    assert dataset[0] == {"image_id": 1, "file_name": "missing.jpg", "error": "no such file"}
    assert dataset[1]["error"].startswith("not a readable image (") and dataset[1]["image_id"] == 2
    assert dataset[2] == {"image_id": 3, "file_name": "p.jpg", "shape": (427, 640, 3)}


def test_the_folder_refuses_what_would_mix_two_runs(tmp_path):
    plan = PredictionPlan(images=10, inputs_sha256="a", config_sha256="b", shard_size=5, batch_size=2)
    folder = PredictionFolder(str(tmp_path / "out"))
    assert folder.check(plan) is False  # a new folder
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "predictions.json").write_text("[]")
    with pytest.raises(
        ValueError, match=r"holds predictions.json, which this run would replace; give an empty or new folder$"
    ):
        folder.check(plan)
    os.remove(tmp_path / "out" / "predictions.json")
    cfg = LazyConfig.load(TINY_EVAL_CONFIG)
    folder.start(plan, "instances", cfg, "python tools/predict.py")
    other = PredictionPlan(images=10, inputs_sha256="a", config_sha256="b", shard_size=5, batch_size=4)
    assert folder.check(other) is False  # nothing finished yet: the new plan replaces the old one
    folder.write_shard(1, [], [], [])
    with pytest.raises(ValueError) as error:
        folder.check(other)
    assert str(error.value) == (
        f"--output {tmp_path / 'out'} holds the predictions of another run (--batch-size 2 then, 4 now): give another "
        "folder, or remove it to start afresh"
    )
    changed = PredictionPlan(images=10, inputs_sha256="a", config_sha256="c", shard_size=5, batch_size=2)
    with pytest.raises(ValueError, match=r"another run \(other model, weights or test-time input \(config\)\)"):
        folder.check(changed)
    assert folder.check(plan) is False  # resumable
    folder.write_shard(0, [], [], [])
    folder.merge(plan, "instances", {"categories": []})
    assert folder.check(plan) is True  # nothing to do
    assert not (tmp_path / "out" / "shards").exists()


def test_a_stop_says_how_many_shards_are_kept_and_how_to_continue(tmp_path, capsys, monkeypatch):
    plan = PredictionPlan(images=10, inputs_sha256="a", config_sha256="b", shard_size=5)
    folder = PredictionFolder(str(tmp_path))
    folder.start(plan, "instances", LazyConfig.load(TINY_EVAL_CONFIG), "")
    folder.write_shard(0, [], [], [])
    monkeypatch.setattr("sys.argv", ["tools/predict.py", "--input", "in dir", "--output", str(tmp_path)])
    # A process that received a stop keeps quiet about what it tears down; this one goes on.
    monkeypatch.setattr("sys.unraisablehook", sys.unraisablehook)
    monkeypatch.setattr("gcnet.engine.interruption._STOPS", [])
    with pytest.raises(SystemExit) as stop:
        with exit_on_stop("predict", "prediction", state=shard_state(str(tmp_path), plan)):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    shards = tmp_path / "shards"
    continued = f"python tools/predict.py --input 'in dir' --output {tmp_path}"
    assert stop.value.code == 143
    assert capsys.readouterr().err == (
        f"predict: prediction interrupted by SIGTERM; 1 of 2 shards are finished in {shards}, and the same command "
        f"continues from them: {continued}\n"
    )
    with pytest.raises(SystemExit) as full:
        with exit_on_stop("predict", "prediction", state=shard_state(str(tmp_path), plan)):
            raise OSError(errno.ENOSPC, "No space left on device", str(shards / "000001.json.partial"))
    assert str(full.value.code).startswith(  # printed by Python with exit status 1
        f"predict: writing {shards / '000001.json.partial'} failed (No space left on device): make room; 1 of 2 shards"
    )


def test_a_live_runs_folder_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=tool_env()
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        plan = PredictionPlan(images=10, inputs_sha256="a", config_sha256="b")
        with pytest.raises(ValueError, match=rf"^--output {tmp_path} is in use by another run \(pid {holder.pid} on "):
            PredictionFolder(str(tmp_path)).check(plan)
    finally:
        holder.kill()
        holder.wait()
    assert PredictionFolder(str(tmp_path)).check(plan) is False  # the lock died with its process
