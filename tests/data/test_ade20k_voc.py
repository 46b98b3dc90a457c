"""ADE20K (detectron2's ade20k_sem_seg_*) and Pascal VOC 2012 aug (voc_2012_aug_sem_seg_train,
voc_2012_sem_seg_val) on real images: CamVid written in their layouts, prepared with
gcnet.data.prepare_dataset (what tools/prepare_datasets.py runs), loaded, and run through
their mmsegmentation configs with tools/train_net.py."""

import json
import re

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from detectron2.data import MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from gcnet.data import VOC_SEM_SEG_CLASSES, load_voc_semantic, prepare_dataset
from gcnet.data.pascal_voc import VOC_SEM_SEG_SPLITS

from ..helpers import run_tool

UNLABELLED = 11  # CamVid's "unlabelled"; 0..10 are its classes
# Small inputs for the R-50-D8 configs on CPU.
TINY_SEM_SEG = [
    "train.init_checkpoint=",
    "train.device=cpu",
    "train.log_period=1",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "dataloader.train.mapper.augmentations.0.short_edge_length=[96,128]",
    "dataloader.train.mapper.augmentations.0.max_size=512",
    "dataloader.train.mapper.augmentations.1.crop_size=[96,96]",
    "dataloader.test.mapper.augmentations.0.short_edge_length=96",
]


def camvid_pairs(camvid, split, count):
    lines = (camvid / f"camvid_subset_{split}.txt").read_text().split("\n")[:count]
    return [
        (camvid / image, np.asarray(Image.open(camvid / label))) for image, label in (line.split() for line in lines)
    ]


def write_camvid_as_ade20k(camvid, root, counts):
    """ADEChallengeData2016/images/<split>/<name>.jpg (links to the CamVid images) and
    annotations/<split>/<name>.png with ADE20K's ids: CamVid class c as c + 1, unlabelled as 0."""
    dataset = root / "ADEChallengeData2016"
    for split, folder in (("train", "training"), ("val", "validation")):
        (dataset / "images" / folder).mkdir(parents=True)
        (dataset / "annotations" / folder).mkdir(parents=True)
        for image, labels in camvid_pairs(camvid, split, counts[split]):
            (dataset / "images" / folder / f"{image.stem}.jpg").symlink_to(image)
            ade = np.where(labels == UNLABELLED, 0, labels + 1).astype(np.uint8)
            Image.fromarray(ade).save(dataset / "annotations" / folder / f"{image.stem}.png")
    return dataset


def test_prepare_ade20k_writes_detectron2_label_maps(shared_data, tmp_path):
    dataset = write_camvid_as_ade20k(shared_data / "camvid", tmp_path, {"train": 2, "val": 2})
    assert prepare_dataset("ade20k", str(tmp_path)) == "Wrote 4 ADE20K label maps"
    val = MetadataCatalog.get("ade20k_sem_seg_val")
    assert (
        val.sem_seg_root.endswith("ADEChallengeData2016/annotations_detectron2/validation")
        and len(val.stuff_classes) == 150
    )
    dicts = load_sem_seg(str(dataset / "annotations_detectron2" / "validation"), str(dataset / "images" / "validation"))
    assert len(dicts) == 2
    (image, camvid), *_ = camvid_pairs(shared_data / "camvid", "val", 1)
    assert dicts[0]["file_name"].endswith(f"{image.stem}.jpg")
    labels = np.asarray(Image.open(dicts[0]["sem_seg_file_name"]))
    assert np.array_equal(labels, np.where(camvid == UNLABELLED, 255, camvid))  # "other" ignored, classes - 1
    assert prepare_dataset("ade20k", str(tmp_path)) == "Wrote 0 ADE20K label maps"  # existing files are kept


def test_prepare_ade20k_names_a_bad_label_file(shared_data, tmp_path):
    dataset = write_camvid_as_ade20k(shared_data / "camvid", tmp_path, {"train": 1, "val": 1})
    bad = next((dataset / "annotations" / "validation").glob("*.png"))
    labels = np.asarray(Image.open(bad)).copy()
    labels[0, 0] = 200
    Image.fromarray(labels).save(bad)
    result = run_tool("tools/prepare_datasets.py", "ade20k", "--root", tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"prepare_datasets: {bad}: values [200] are not ADE20K class ids (0 = other, 1..150)\n"


def write_camvid_as_voc(camvid, root, counts, sbd_extra):
    """VOC2012/JPEGImages (links), SegmentationClass (CamVid classes as VOC ids, unlabelled as
    255) and ImageSets/Segmentation/{train,val}.txt; SBD's benchmark_RELEASE/dataset with .mat
    label maps for ``sbd_extra`` more training images and one that is in VOC's train.txt."""
    voc, sbd = root / "VOC2012", root / "benchmark_RELEASE" / "dataset"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    (sbd / "cls").mkdir(parents=True)
    ids = {}
    for split, count in counts.items():
        pairs = camvid_pairs(camvid, split, count + (sbd_extra if split == "train" else 0))
        ids[split] = [image.stem for image, _ in pairs]
        for image, labels in pairs:
            (voc / "JPEGImages" / f"{image.stem}.jpg").symlink_to(image)
            voc_labels = np.where(labels == UNLABELLED, 255, labels).astype(np.uint8)
            Image.fromarray(voc_labels).save(voc / "SegmentationClass" / f"{image.stem}.png")
            savemat(
                sbd / "cls" / f"{image.stem}.mat",
                {"GTcls": {"Segmentation": np.where(labels == UNLABELLED, 0, labels).astype(np.uint8)}},
            )
    voc_train, sbd_only = ids["train"][: counts["train"]], ids["train"][counts["train"] :]
    (voc / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in voc_train))
    (voc / "ImageSets/Segmentation/val.txt").write_text("".join(f"{i}\n" for i in ids["val"]))
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in sbd_only + voc_train[:1]))
    (sbd / "val.txt").write_text("".join(f"{i}\n" for i in ids["val"][:1]))  # in VOC's val: never trained on
    return voc, sbd.parent, sbd_only


def test_prepare_voc_aug_and_the_registered_splits(shared_data, tmp_path):
    voc, sbd_root, sbd_only = write_camvid_as_voc(shared_data / "camvid", tmp_path, {"train": 2, "val": 2}, sbd_extra=2)
    missing = f"Pascal VOC image list {voc}/ImageSets/Segmentation/aug.txt not found"
    with pytest.raises(FileNotFoundError, match="python tools/prepare_datasets.py voc_aug --sbd") as info:
        load_voc_semantic(str(voc), VOC_SEM_SEG_SPLITS["voc_2012_aug_sem_seg_train"])
    assert str(info.value).startswith(missing)
    written = prepare_dataset("voc_aug", str(tmp_path), sbd=str(sbd_root))
    assert written == "Wrote 6 SegmentationClassAug label maps and 2 image ids to aug.txt"
    assert (voc / "ImageSets/Segmentation/aug.txt").read_text().split() == sorted(sbd_only)
    train = load_voc_semantic(str(voc), VOC_SEM_SEG_SPLITS["voc_2012_aug_sem_seg_train"])
    assert [d["sem_seg_file_name"].split("/")[-2] for d in train] == ["SegmentationClass"] * 2 + [
        "SegmentationClassAug"
    ] * 2
    aug = np.asarray(Image.open(train[-1]["sem_seg_file_name"]))
    assert np.array_equal(aug, np.asarray(Image.open(voc / "SegmentationClass" / f"{sbd_only[-1]}.png")) % 255)
    val = MetadataCatalog.get("voc_2012_sem_seg_val")
    assert val.stuff_classes == list(VOC_SEM_SEG_CLASSES) and len(val.stuff_classes) == 21 and val.ignore_label == 255


def test_voc_aug_needs_sbd(tmp_path):
    result = run_tool("tools/prepare_datasets.py", "voc_aug", "--root", tmp_path)
    assert result.returncode == 2 and "the following arguments are required: --sbd" in result.stderr
    with pytest.raises(ValueError, match=r"^voc_aug needs SBD's benchmark_RELEASE folder \(--sbd\)$"):
        prepare_dataset("voc_aug", str(tmp_path))


def test_a_damaged_sbd_label_file_is_named(shared_data, tmp_path):
    """A truncated .mat (scipy raises an OSError of its own) is one line that names it."""
    voc, sbd_root, _ = write_camvid_as_voc(shared_data / "camvid", tmp_path, {"train": 1, "val": 1}, sbd_extra=1)
    damaged = sorted((sbd_root / "dataset" / "cls").glob("*.mat"))[0]
    damaged.write_bytes(damaged.read_bytes()[:150])
    with pytest.raises(ValueError) as info:
        prepare_dataset("voc_aug", str(tmp_path), sbd=str(sbd_root))
    message = str(info.value)
    assert message.startswith(f"{damaged}: expected an SBD class label file (GTcls.Segmentation), got ")
    assert message.endswith("; unpack SBD's benchmark.tgz again") and "\n" not in message
    assert not (voc / "ImageSets" / "Segmentation" / "aug.txt").exists()


def metrics_of(out):
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]


def test_voc_config_trains_and_evaluates_on_camvid(shared_data, tmp_path):
    write_camvid_as_voc(shared_data / "camvid", tmp_path, {"train": 2, "val": 2}, sbd_extra=2)
    env = {"DETECTRON2_DATASETS": str(tmp_path)}
    prepare_dataset("voc_aug", str(tmp_path), sbd=str(tmp_path / "benchmark_RELEASE"))
    out = tmp_path / "out"
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        "configs/PascalVOC-SemanticSegmentation/mmseg_gcnet_R_50_D8_512x512_20k.py",
        *TINY_SEM_SEG,
        "train.max_iter=2",
        f"train.output_dir={out}",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(out)
    assert len([m for m in metrics if "loss_sem_seg" in m and "loss_sem_seg_aux" in m]) == 2
    assert 0 <= metrics[-1]["sem_seg/mIoU"] <= 100 and "sem_seg/IoU-aeroplane" in metrics[-1]


def test_ade20k_config_evaluates_on_camvid(shared_data, tmp_path):
    write_camvid_as_ade20k(shared_data / "camvid", tmp_path, {"train": 1, "val": 2})
    env = {"DETECTRON2_DATASETS": str(tmp_path)}
    assert prepare_dataset("ade20k", str(tmp_path)) == "Wrote 3 ADE20K label maps"
    out = tmp_path / "out"
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        "configs/ADE20K-SemanticSegmentation/mmseg_gcnet_R_50_D8_512x512_80k.py",
        "--eval-only",
        *TINY_SEM_SEG,
        f"train.output_dir={out}",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Start inference on 2 batches" in result.stdout
    header, values = re.findall(r"copypaste: (.*)", result.stdout)[-2:]
    assert header == "mIoU,fwIoU,mACC,pACC" and 0 <= float(values.split(",")[0]) <= 100
