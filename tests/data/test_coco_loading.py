"""COCO-format loading: files that are not COCO, missing images, unusable annotations, and the
records detectron2 would make, from one read."""

import builtins
import json
import logging

import pytest
from PIL import Image

from detectron2.data import MetadataCatalog
from detectron2.data.datasets import load_coco_json

from gcnet.data import load_coco_instances


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (100, 80)).save(folder / name)
    return folder


def write_coco(tmp_path, annotations, images=("a.jpg", "b.jpg")):
    data = dict(
        images=[dict(id=i + 1, file_name=name, width=100, height=80) for i, name in enumerate(images)],
        annotations=annotations,
        categories=[dict(id=1, name="thing")],
    )
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def ann(id, bbox, segmentation=None, image_id=1):
    x, y, w, h = bbox
    polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
    return dict(
        id=id,
        image_id=image_id,
        category_id=1,
        bbox=bbox,
        area=w * h,
        iscrowd=0,
        segmentation=[polygon] if segmentation is None else segmentation,
    )


def test_valid_file_loads(tmp_path, images):
    path = write_coco(tmp_path, [ann(1, [10, 10, 20, 30]), ann(2, [5, 5, 10, 10], image_id=2)])
    dicts = load_coco_instances(str(path), str(images), "valid_test")
    assert [len(d["annotations"]) for d in dicts] == [1, 1]
    assert dicts[0]["annotations"][0]["bbox"] == [10, 10, 20, 30]


def test_invalid_json_names_the_file(tmp_path, images):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=rf"{path} is not a COCO instances file: invalid JSON"):
        load_coco_instances(str(path), str(images), "broken")


def test_json_without_coco_keys_names_them(tmp_path, images):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"images": [], "labels": []}))
    with pytest.raises(ValueError, match=r"missing or not a list: \['annotations', 'categories'\]"):
        load_coco_instances(str(path), str(images), "other")


def test_missing_images_are_named(tmp_path, images):
    path = write_coco(tmp_path, [ann(1, [10, 10, 20, 30])], images=("a.jpg", "gone.jpg"))
    with pytest.raises(FileNotFoundError, match=rf"lists 1 images missing under {images}: gone.jpg"):
        load_coco_instances(str(path), str(images), "missing")


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d["images"][1].pop("width"), "images[1] (id=2) lacks 'width'"),
        (lambda d: d["images"][0].update(height="80"), "images[0] (id=1) has height '80', expected an integer"),
        (lambda d: d["images"][0].update(width=0), "images[0] (id=1) has size 0x80, expected positive integers"),
        (
            lambda d: d["annotations"][0].pop("bbox"),
            "annotations[0] (id=1) lacks 'bbox' (and 1 more annotations have problems)",
        ),
        (
            lambda d: d["annotations"][1].update(bbox=[1, 2, 3]),
            "annotations[1] (id=2) has bbox [1, 2, 3], expected [x, y, width, height]",
        ),
        (lambda d: d["annotations"][1].pop("category_id"), "annotations[1] (id=2) lacks 'category_id'"),
        (
            lambda d: d["annotations"][1].update(category_id=7),
            "annotations have category ids [7] that 'categories' does not list",
        ),
        (
            lambda d: d["annotations"][1].update(image_id=9),
            "1 annotations refer to images that 'images' does not list, the first annotation id=2 to image_id 9",
        ),
        (lambda d: d["categories"].append("person"), "categories[1] is 'person', not an object"),
    ],
)
def test_entries_are_checked_field_by_field(tmp_path, images, change, message):
    path = write_coco(tmp_path, [ann(1, [10, 10, 20, 30]), ann(2, [5, 5, 10, 10], image_id=2)])
    data = json.loads(path.read_text())
    if "lacks 'bbox'" in message:
        data["annotations"][1].pop("bbox")
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as error:
        load_coco_instances(str(path), str(images), "fields")
    assert str(error.value) == f"{path}: {message}"


def test_unusable_annotations_are_skipped_by_id(tmp_path, images, caplog):
    path = write_coco(
        tmp_path,
        [
            ann(1, [10, 10, 20, 30]),
            ann(2, [150, 10, 20, 30]),  # right of the 100-pixel-wide image
            ann(3, [10, 10, 20, 30], segmentation=[[10, 10, 30, 10]]),  # two points
            ann(4, [90, 70, 20, 30]),  # reaches outside: clipped
        ],
    )
    with caplog.at_level(logging.WARNING, logger="gcnet.data.coco"):
        dicts = load_coco_instances(str(path), str(images), "dirty")
    kept = dicts[0]["annotations"]
    assert [a["id"] for a in kept] == [1, 4]
    assert kept[1]["bbox"] == [90, 70, 10, 10]
    text = caplog.text
    assert "dirty: skipping annotation id=2: bbox [150, 10, 20, 30] has no area inside the 100x80 image" in text
    assert "dirty: skipping annotation id=3: segmentation has no polygon with at least 3 points" in text
    assert "dirty: clipping annotation id=4" in text


def test_records_are_detectron2s_from_one_read(shared_data, monkeypatch):
    """The records (and metadata) detectron2's load_coco_json makes of the same file, with the
    boxes clipped to the image, from a single read of the file."""
    json_file = str(shared_data / "balloon" / "annotations" / "balloon_instances_val.json")
    image_root = str(shared_data / "balloon" / "val")
    expected = load_coco_json(json_file, image_root, "balloon_val_detectron2", extra_annotation_keys=["id"])
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: opened.append(str(file)) or real_open(file, *a, **k))
    records = load_coco_instances(json_file, image_root, "balloon_val_gcnet")
    monkeypatch.undo()
    assert opened.count(json_file) == 1
    assert (
        MetadataCatalog.get("balloon_val_gcnet").thing_classes
        == MetadataCatalog.get("balloon_val_detectron2").thing_classes
        == ["balloon"]
    )
    assert len(records) == len(expected) == 13
    for ours, theirs in zip(records, expected):
        assert {k: v for k, v in ours.items() if k != "annotations"} == {
            k: v for k, v in theirs.items() if k != "annotations"
        }
        assert len(ours["annotations"]) == len(theirs["annotations"])
        for a, b in zip(ours["annotations"], theirs["annotations"]):
            assert {k: v for k, v in a.items() if k != "bbox"} == {k: v for k, v in b.items() if k != "bbox"}
            assert all(abs(p - q) <= 1.0 for p, q in zip(a["bbox"], b["bbox"]))
