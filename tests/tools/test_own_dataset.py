"""README "Train on your own dataset", followed command by command on a small COCO-format set
of real photos (category ids 44 and 81, an image without annotations in each split), and the
pieces behind it: the labelme converter and the dataset registration."""

import json
import re
import shlex

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_util

from detectron2.data import DatasetCatalog, MetadataCatalog

from gcnet.data import custom_dataset_num_classes, register_custom_dataset
from gcnet.data.labelme import labelme_to_coco

from ..helpers import REPO_ROOT, run_tool

CATEGORIES = {44: "bottle", 81: "sink"}
# The README's commands made quick: a GC-ResNet-18 from scratch, small images, a few iterations.
QUICK = [
    "train.init_checkpoint=",
    "model.backbone.bottom_up.depth=18",
    "train.max_iter=4",
    "train.log_period=1",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "dataloader.train.mapper.augmentations.0.short_edge_length=[128,160]",
    "dataloader.train.mapper.augmentations.0.max_size=256",
    "dataloader.test.mapper.augmentations.0.short_edge_length=160",
    "dataloader.test.mapper.augmentations.0.max_size=256",
    "model.roi_heads.box_predictor.test_score_thresh=0.0",  # an untrained model's scores are low
]


def readme_commands():
    """The commands of the README section, one string each (continuation lines joined)."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Train on your own dataset", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line and not line.startswith("#")]
    return lines


def write_split(coco, folder, images, with_empty):
    """A split of tiny_coco: the bottle and sink instances of ``images`` (real ids 44, 81), and
    one more image without any."""
    folder.mkdir(parents=True)
    kept = [dict(a) for a in coco["annotations"] if a["image_id"] in {im["id"] for im in images}]
    kept = [a for a in kept if a["category_id"] in CATEGORIES and not a["iscrowd"]]
    images = images + [with_empty]
    for im in images:
        (folder / im["file_name"]).symlink_to(coco["root"] / im["file_name"])
    return dict(
        images=images,
        annotations=kept,
        categories=[dict(id=i, name=n) for i, n in CATEGORIES.items()],
    )


@pytest.fixture(scope="module")
def my_data(shared_data, tmp_path_factory):
    """my_data/{train,val}/ with my_data/{train,val}.json, as the README lays them out."""
    coco = json.loads((shared_data / "tiny_coco" / "annotations" / "instances_train2017.json").read_text())
    coco["root"] = shared_data / "tiny_coco" / "train2017"
    with_both = sorted({a["image_id"] for a in coco["annotations"] if a["category_id"] in CATEGORIES})
    by_id = {im["id"]: im for im in coco["images"]}
    empty = [im for im in coco["images"] if im["id"] not in with_both]  # none of their instances is kept
    root = tmp_path_factory.mktemp("own") / "my_data"
    splits = {
        "train": write_split(coco, root / "train", [by_id[i] for i in with_both[:10]], empty[0]),
        "val": write_split(coco, root / "val", [by_id[i] for i in with_both[10:14]], empty[1]),
    }
    for split, data in splits.items():
        (root / f"{split}.json").write_text(json.dumps(data))
    return root


def test_readme_commands_fine_tune_evaluate_and_draw(my_data, tmp_path):
    labelme, train, demo = readme_commands()
    assert labelme.startswith("python tools/labelme_to_coco.py") and "train_net.py" in train and "demo.py" in demo
    photos = tmp_path / "my_photos"
    photos.mkdir()
    val = json.loads((my_data / "val.json").read_text())
    (photos / "photo.jpg").symlink_to(my_data / "val" / val["images"][0]["file_name"])

    def run(command, *extra):
        command = command.replace("output/", f"{tmp_path}/output/").replace("my_photos/", f"{photos}/")
        args = shlex.split(re.sub(r"(?<=[\s=])my_data/", f"{my_data}/", command))
        assert args[0] == "python"
        return run_tool(*args[1:], *extra)

    result = run(train, *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "output" / "my_data"
    log = (out / "log.txt").read_text()
    assert re.search(r"Classes 2 \(\w+_train\): (bottle, sink|sink, bottle)\n", log)  # in the header
    assert log.index("Classes 2") < log.index("Model GeneralizedRCNN")
    assert "Removed 1 images with no usable annotations. 10 images left." in log  # the empty one, from training
    assert "Start inference on 5 batches" in log  # evaluated with the empty one
    per_category = log.split("Per-category segm AP", 1)[1]  # under the files' names
    assert re.search(r"\|\s*bottle\s*\|.*\|\s*sink\s*\|", per_category.split("\n\n", 1)[0])
    final = json.loads((out / "metrics.json").read_text().splitlines()[-1])
    assert final["iteration"] == 4 and 0 <= final["segm/AP"] <= 100 and "bbox/AP" in final
    weights = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert weights["roi_heads.box_predictor.cls_score.weight"].shape[0] == 3  # 2 classes + background
    assert weights["roi_heads.mask_head.predictor.weight"].shape[0] == 2

    result = run(demo, "--confidence-threshold", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = sorted(p.name for p in (out / "demo").iterdir())
    assert drawn == ["photo.jpg", "photo_gc_res3.1.jpg", "photo_gc_res4.1.jpg", "photo_gc_res5.1.jpg"]
    with Image.open(out / "demo" / "photo.jpg") as picture, Image.open(photos / "photo.jpg") as photo:
        assert picture.size == photo.size


def write_labelme(folder, coco):
    """labelme files beside the images of a COCO split (polygons, plus a rectangle, a circle and
    a line), as labelme writes them."""
    by_image = {}
    for ann in coco["annotations"]:
        for polygon in ann["segmentation"]:
            shape = dict(
                label=CATEGORIES[ann["category_id"]],
                points=np.reshape(polygon, (-1, 2)).tolist(),
                group_id=ann["id"],
                shape_type="polygon",
                flags={},
            )
            by_image.setdefault(ann["image_id"], []).append(shape)
    for im in coco["images"]:
        shapes = by_image.get(im["id"], [])
        data = dict(
            version="5.4.1",
            flags={},
            shapes=shapes,
            imagePath=im["file_name"],
            imageData=None,
            imageHeight=im["height"],
            imageWidth=im["width"],
        )
        (folder / (im["file_name"].rsplit(".", 1)[0] + ".json")).write_text(json.dumps(data))


def test_labelme_files_become_a_coco_file(my_data, tmp_path):
    folder = tmp_path / "labelme"
    folder.mkdir()
    coco = json.loads((my_data / "val.json").read_text())
    for im in coco["images"]:
        (folder / im["file_name"]).symlink_to(my_data / "val" / im["file_name"])
    write_labelme(folder, coco)
    extra = json.loads((folder / (coco["images"][0]["file_name"].rsplit(".", 1)[0] + ".json")).read_text())
    extra["shapes"] += [
        dict(label="box", points=[[10, 20], [50, 60]], group_id=None, shape_type="rectangle", flags={}),
        dict(label="ball", points=[[100, 100], [110, 100]], group_id=None, shape_type="circle", flags={}),
        dict(label="crack", points=[[0, 0], [30, 30]], group_id=None, shape_type="line", flags={}),
    ]
    (folder / (coco["images"][0]["file_name"].rsplit(".", 1)[0] + ".json")).write_text(json.dumps(extra))

    result = run_tool("tools/labelme_to_coco.py", folder, tmp_path / "val.json")
    assert result.returncode == 0, result.stderr
    assert "skipped a 'line' shape labelled 'crack' with 2 points (no area)" in result.stdout
    converted = json.loads((tmp_path / "val.json").read_text())
    assert [c["name"] for c in converted["categories"]] == ["ball", "bottle", "box", "sink"]
    assert [c["id"] for c in converted["categories"]] == [1, 2, 3, 4]
    assert sorted(im["file_name"] for im in converted["images"]) == sorted(im["file_name"] for im in coco["images"])
    assert len(converted["annotations"]) == len(coco["annotations"]) + 2
    # The same instances (file, class, pixel area) as the COCO file the labelme files were made from.
    names = {c["id"]: c["name"] for c in converted["categories"]}
    files = {im["id"]: im["file_name"] for im in converted["images"]}
    source = {im["id"]: im for im in coco["images"]}

    def pixels(ann, image):
        return float(
            mask_util.area(mask_util.merge(mask_util.frPyObjects(ann["segmentation"], image["height"], image["width"])))
        )

    original = sorted(
        (source[a["image_id"]]["file_name"], CATEGORIES[a["category_id"]], pixels(a, source[a["image_id"]]))
        for a in coco["annotations"]
    )
    ours = sorted((files[a["image_id"]], names[a["category_id"]], a["area"]) for a in converted["annotations"])
    assert [o for o in ours if o[1] in CATEGORIES.values()] == original
    box = next(a for a in converted["annotations"] if names[a["category_id"]] == "box")
    assert box["bbox"] == [10.0, 20.0, 40.0, 40.0] and box["area"] == pytest.approx(1600, abs=100)
    ball = next(a for a in converted["annotations"] if names[a["category_id"]] == "ball")
    assert ball["area"] == pytest.approx(np.pi * 100, rel=0.1)

    again = run_tool("tools/labelme_to_coco.py", folder, tmp_path / "val.json")
    assert (
        again.returncode == 2
        and again.stderr.strip() == f"labelme_to_coco: {tmp_path / 'val.json'} exists; pass --overwrite to replace it"
    )
    missing = run_tool("tools/labelme_to_coco.py", tmp_path / "none", tmp_path / "x.json")
    assert missing.stderr.strip() == f"labelme_to_coco: {tmp_path / 'none'}: no such folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no labelme file"):
        labelme_to_coco(str(tmp_path / "empty"))


def test_registration(my_data, tmp_path):
    name = register_custom_dataset("own_test_val", str(my_data / "val.json"), str(my_data / "val"))
    assert name == "own_test_val"
    assert register_custom_dataset(name, str(my_data / "val.json"), str(my_data / "val")) == name  # again: nothing
    metadata = MetadataCatalog.get(name)
    assert metadata.thing_classes == ["bottle", "sink"]
    assert metadata.thing_dataset_id_to_contiguous_id == {44: 0, 81: 1}
    dicts = DatasetCatalog.get(name)  # detectron2's loader agrees with the registered metadata
    assert len(dicts) == 5 and {o["category_id"] for d in dicts for o in d["annotations"]} <= {0, 1}
    assert sum(not d["annotations"] for d in dicts) == 1
    assert custom_dataset_num_classes(str(my_data / "val.json")) == 2
    # Other files under the same name replace the first ones.
    (tmp_path / "one.json").write_text(json.dumps(dict(images=[], annotations=[], categories=[dict(id=3, name="cup")])))
    register_custom_dataset(name, str(tmp_path / "one.json"), str(my_data / "val"))
    assert MetadataCatalog.get(name).thing_classes == ["cup"]
    with pytest.raises(ValueError, match="Dataset name 'balloon_train' is taken by another registered dataset"):
        register_custom_dataset("balloon_train", str(my_data / "val.json"), str(my_data / "val"))
    with pytest.raises(FileNotFoundError, match=r"the image folder .*/nowhere does not exist"):
        register_custom_dataset("own_test_x", str(my_data / "val.json"), str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"missing.json: no such COCO annotation file"):
        register_custom_dataset("own_test_x", str(tmp_path / "missing.json"), str(my_data / "val"))
    (tmp_path / "bad.json").write_text(json.dumps(dict(images=[], categories=[dict(name="cup")])))
    with pytest.raises(ValueError, match=r"bad.json: every category needs an integer 'id' and a 'name'"):
        custom_dataset_num_classes(str(tmp_path / "bad.json"))


def test_bad_dataset_files_stop_training_with_one_line(my_data, tmp_path):
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        "configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_finetune.py",
        f"dataset.train.json_file={tmp_path}/missing.json",
        f"dataset.train.image_root={my_data}/train",
        f"train.output_dir={tmp_path}/out",
        *QUICK,
    )
    assert result.returncode != 0
    assert f"{tmp_path}/missing.json: no such COCO annotation file" in result.stderr
