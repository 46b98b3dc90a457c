"""Cityscapes loading on CamVid written in the Cityscapes layout: train ids, checks, mapper,
registrations."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

import detectron2.data.transforms as T

from gcnet.data import SemSegDatasetMapper, create_train_id_labels, load_checked_cityscapes_semantic

from ..helpers import CAMVID_TO_CITYSCAPES_ID, run_tool, write_camvid_as_cityscapes

# Cityscapes label id -> train id for the ids the CamVid mapping produces.
CITYSCAPES_TRAIN_ID = {23: 10, 11: 2, 17: 5, 7: 0, 8: 1, 21: 8, 20: 7, 13: 4, 26: 13, 24: 11, 25: 12, 0: 255}


@pytest.fixture
def cityscapes(shared_data, tmp_path):
    return write_camvid_as_cityscapes(shared_data / "camvid", tmp_path, {"train": 3, "val": 2})


def split_dirs(root, split):
    return str(root / "leftImg8bit" / split), str(root / "gtFine" / split)


def test_prepare_cityscapes_writes_train_ids(cityscapes, shared_data):
    result = run_tool("tools/prepare_datasets.py", "cityscapes", "--root", cityscapes.parent)
    assert result.returncode == 0, result.stderr
    assert "Wrote 5 train-id label maps" in result.stdout
    dicts = load_checked_cityscapes_semantic(*split_dirs(cityscapes, "val"))
    assert len(dicts) == 2 and (dicts[0]["height"], dicts[0]["width"]) == (360, 480)
    name = dicts[0]["file_name"].split("/")[-1][: -len("_leftImg8bit.png")]
    camvid = np.asarray(Image.open(shared_data / "camvid" / "valannot" / f"{name}.png"))
    expected = np.vectorize(lambda c: CITYSCAPES_TRAIN_ID[CAMVID_TO_CITYSCAPES_ID[c]])(camvid)
    assert np.array_equal(np.asarray(Image.open(dicts[0]["sem_seg_file_name"])), expected)
    assert create_train_id_labels(str(cityscapes / "gtFine")) == 0  # existing files are kept


def test_missing_train_ids_say_how_to_create_them(cityscapes):
    with pytest.raises(FileNotFoundError) as info:
        load_checked_cityscapes_semantic(*split_dirs(cityscapes, "train"))
    message = str(info.value)
    assert message.startswith("3 of 3 label files *_gtFine_labelTrainIds.png are missing under")
    assert "python tools/prepare_datasets.py cityscapes" in message


def test_missing_split_folder_is_named(tmp_path):
    image_dir = tmp_path / "cityscapes" / "leftImg8bit" / "val"
    with pytest.raises(
        FileNotFoundError, match=rf"Cityscapes split folder {image_dir} not found\. Expected leftImg8bit/"
    ):
        load_checked_cityscapes_semantic(str(image_dir), str(tmp_path / "cityscapes" / "gtFine" / "val"))


def test_unknown_label_id_is_named(cityscapes):
    label_file = next((cityscapes / "gtFine" / "train").rglob("*_gtFine_labelIds.png"))
    ids = np.asarray(Image.open(label_file)).copy()
    ids[0, :3] = 200
    Image.fromarray(ids).save(label_file)
    with pytest.raises(ValueError, match=rf"{label_file}: values \[200\] are not Cityscapes label ids"):
        create_train_id_labels(str(cityscapes / "gtFine"))


def test_three_channel_label_maps_and_no_label_maps_are_refused(cityscapes, tmp_path):
    label_file = next((cityscapes / "gtFine" / "train").rglob("*_gtFine_labelIds.png"))
    ids = np.asarray(Image.open(label_file))
    Image.fromarray(np.stack([ids] * 3, axis=-1)).save(label_file)
    with pytest.raises(
        ValueError, match=rf"^{label_file}: a RGB image; Cityscapes' label maps have one channel of label ids$"
    ):
        create_train_id_labels(str(cityscapes / "gtFine"))
    assert not list((cityscapes / "gtFine").rglob("*_gtFine_labelTrainIds.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'empty'} holds no \*_gtFine_labelIds.png file"):
        create_train_id_labels(str(tmp_path / "empty"))


def test_image_not_named_like_cityscapes(cityscapes):
    (cityscapes / "leftImg8bit" / "val" / "camvid" / "stray.png").write_bytes(b"")
    create_train_id_labels(str(cityscapes / "gtFine"))
    with pytest.raises(
        ValueError, match=r"stray.png: expected a Cityscapes image named <city>_<seq>_<frame>_leftImg8bit.png"
    ):
        load_checked_cityscapes_semantic(*split_dirs(cityscapes, "val"))


@pytest.fixture
def train_dicts(cityscapes):
    create_train_id_labels(str(cityscapes / "gtFine"))
    return load_checked_cityscapes_semantic(*split_dirs(cityscapes, "train"))


def test_mapper_crops_image_and_label_together(train_dicts):
    mapper = SemSegDatasetMapper(True, [T.RandomCrop("absolute", (128, 160)), T.RandomFlip()])
    out = mapper(train_dicts[0])
    assert out["image"].shape == (3, 128, 160) and out["image"].dtype == torch.uint8
    assert out["sem_seg"].shape == (128, 160) and out["sem_seg"].dtype == torch.int64
    assert set(out["sem_seg"].unique().tolist()) <= set(range(19)) | {255}
    assert "sem_seg_file_name" not in out


def test_mapper_rejects_size_mismatch(train_dicts):
    label_file = train_dicts[0]["sem_seg_file_name"]
    Image.open(label_file).resize((240, 180)).save(label_file)
    with pytest.raises(
        ValueError, match=rf"{label_file}: label map is 240x180 but its image .*_leftImg8bit.png is 480x360"
    ):
        SemSegDatasetMapper(True, [])(train_dicts[0])


def test_mapper_rejects_unknown_labels(train_dicts):
    label_file = train_dicts[1]["sem_seg_file_name"]
    labels = np.asarray(Image.open(label_file)).copy()
    labels[5, 5], labels[6, 6] = 19, 77
    Image.fromarray(labels).save(label_file)
    with pytest.raises(
        ValueError, match=rf"{label_file}: label values \[19, 77\] are neither class ids 0..18 nor the ignore value 255"
    ):
        SemSegDatasetMapper(True, [])(train_dicts[1])


def test_registrations_live_beside_detectron2s():
    """Importing gcnet.data keeps detectron2's Cityscapes splits; gcnet's checked ones have
    names of their own and detectron2's metadata."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import gcnet.data  # noqa: F401

    for split in ("train", "val"):
        theirs, ours = f"cityscapes_fine_sem_seg_{split}", f"gcnet_cityscapes_fine_sem_seg_{split}"
        assert DatasetCatalog[theirs].__module__ == "detectron2.data.datasets.builtin"
        assert DatasetCatalog[ours].__module__ == "gcnet.data.cityscapes"
        assert MetadataCatalog.get(ours).stuff_classes == MetadataCatalog.get(theirs).stuff_classes
        assert os.path.normpath(MetadataCatalog.get(ours).gt_dir) == os.path.normpath(
            MetadataCatalog.get(theirs).gt_dir
        )
