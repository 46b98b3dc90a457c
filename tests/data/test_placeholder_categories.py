"""Category entries that are not classes (labelme's ``__ignore__`` and ``_background_``, by
name in any case, whatever their id) are dropped, with their annotations, when a COCO file is
loaded or registered and when labelme files are converted, each time in one line naming them;
the model's classes, the metadata and the evaluation's ground truth agree. A class without any
annotation in a training file is named in a warning."""

import json
import logging

import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances

from gcnet.data import custom_dataset_num_classes, load_coco_instances, register_custom_dataset
from gcnet.data.labelme import labelme_to_coco

# As labelme's labelme2coco writes them: placeholders first, with ids -1 and 0.
CATEGORIES = [
    dict(id=-1, name="__ignore__"),
    dict(id=0, name="_background_"),
    dict(id=1, name="cat"),
    dict(id=2, name="dog"),
]


def box(id, image_id, category_id, x):
    return dict(
        id=id,
        image_id=image_id,
        category_id=category_id,
        bbox=[x, 10, 20, 20],
        area=400,
        iscrowd=0,
        segmentation=[[x, 10, x + 20, 10, x + 20, 30, x, 30]],
    )


@pytest.fixture
def labelme_export(tmp_path):
    """Two images, a cat and a dog each, and a region labelled _background_."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (100, 80)).save(folder / name)
    annotations = [box(1, 1, 1, 5), box(2, 1, 2, 40), box(3, 2, 1, 5), box(4, 2, 2, 40), box(5, 2, 0, 70)]
    images = [dict(id=1, file_name="a.jpg", width=100, height=80), dict(id=2, file_name="b.jpg", width=100, height=80)]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=CATEGORIES)))
    return path, folder


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_loading_drops_placeholder_categories(labelme_export, caplog):
    path, folder = labelme_export
    dicts = load_coco_instances(str(path), str(folder), "placeholder_test")
    assert [[o["category_id"] for o in d["annotations"]] for d in dicts] == [[0, 1], [0, 1]]
    metadata = MetadataCatalog.get("placeholder_test")
    assert metadata.thing_classes == ["cat", "dog"] and metadata.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1}
    assert warnings_of(caplog) == [
        f"placeholder_test: dropped the categories '__ignore__' (id -1), '_background_' (id 0) of {path}, "
        "which are not classes, and their 1 annotations"
    ]
    load_coco_instances(str(path), str(folder), "placeholder_test")
    assert len(warnings_of(caplog)) == 1  # said once


def test_by_name_in_any_case_whatever_the_id(labelme_export):
    path, folder = labelme_export
    data = json.loads(path.read_text())
    data["categories"] = [
        dict(id=7, name="_Background_"),
        dict(id=1, name="cat"),
        dict(id=2, name="dog"),
        dict(id=3, name=" __IGNORE__"),
    ]
    data["annotations"][-1]["category_id"] = 7
    path.write_text(json.dumps(data))
    load_coco_instances(str(path), str(folder), "placeholder_case_test")
    assert MetadataCatalog.get("placeholder_case_test").thing_classes == ["cat", "dog"]
    assert custom_dataset_num_classes(str(path)) == 2


def perfect_predictions(records):
    outputs = []
    for record in records:
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (o["bbox"] for o in record["annotations"])]
        instances = Instances((record["height"], record["width"]))
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.pred_classes = torch.tensor([o["category_id"] for o in record["annotations"]])
        instances.scores = torch.ones(len(boxes))
        outputs.append({"instances": instances})
    return outputs


def test_a_registered_dataset_trains_and_evaluates_the_classes_only(labelme_export, tmp_path, monkeypatch):
    path, folder = labelme_export
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    name = register_custom_dataset("placeholder_registered", str(path), str(folder))
    assert custom_dataset_num_classes(str(path)) == 2
    metadata = MetadataCatalog.get(name)
    assert metadata.thing_classes == ["cat", "dog"] and metadata.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1}
    ground_truth = json.loads(open(metadata.json_file).read())  # what COCOEvaluator reads
    assert [c["name"] for c in ground_truth["categories"]] == ["cat", "dog"] and len(ground_truth["annotations"]) == 4
    assert json.loads(path.read_text())["categories"] == CATEGORIES  # the user's file is left as it is
    records = DatasetCatalog.get(name)
    evaluator = COCOEvaluator(name, tasks=("bbox",), distributed=False)
    evaluator.reset()
    evaluator.process([{"image_id": r["image_id"]} for r in records], perfect_predictions(records))
    results = evaluator.evaluate()["bbox"]
    assert results["AP"] == pytest.approx(100)
    assert sorted(k for k in results if k.startswith("AP-")) == ["AP-cat", "AP-dog"]


def test_a_class_without_annotations_is_named(labelme_export, caplog):
    path, _ = labelme_export
    data = json.loads(path.read_text())
    data["categories"] += [dict(id=5, name="bird"), dict(id=9, name="fish")]
    path.write_text(json.dumps(data))
    assert custom_dataset_num_classes(str(path)) == 4
    assert warnings_of(caplog) == [
        f"{path}: 2 of its 4 classes have no annotation: 'bird' (id 5), 'fish' (id 9); "
        "the model has an output for each, never trained"
    ]


def test_labelme_conversion_drops_placeholder_shapes(tmp_path, caplog):
    Image.new("RGB", (100, 80)).save(tmp_path / "a.jpg")
    square = [[10, 10], [30, 10], [30, 30], [10, 30]]
    shapes = [
        dict(label=label, points=square, group_id=None, shape_type="polygon", flags={})
        for label in ("cat", "__ignore__", "_Background_", "_background_")
    ]
    (tmp_path / "a.json").write_text(json.dumps(dict(shapes=shapes, imagePath="a.jpg", imageWidth=100, imageHeight=80)))
    coco = labelme_to_coco(str(tmp_path))
    assert coco["categories"] == [dict(id=1, name="cat", supercategory="cat")] and len(coco["annotations"]) == 1
    assert warnings_of(caplog) == [
        f"{tmp_path}: dropped 3 shapes that are not instances of a class "
        "(1 labelled '_Background_', 1 labelled '__ignore__', 1 labelled '_background_')"
    ]
