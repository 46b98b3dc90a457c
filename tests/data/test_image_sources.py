"""collect_images: what a prediction run's --input names (folders, globs, text files of paths,
a COCO JSON), with the ids its predictions are written under; bad inputs in one sentence."""

import json
import os
import re

import pytest

from gcnet.data import ImageRecord, collect_images


@pytest.fixture
def photos(tmp_path, shared_data):
    """photos/a.jpg, photos/sub/b.jpg (and notes.txt, not an image) linked to real photos."""
    val = sorted((shared_data / "balloon" / "val").glob("*.jpg"))
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    (tmp_path / "photos" / "a.jpg").symlink_to(val[0])
    (tmp_path / "photos" / "sub" / "b.jpg").symlink_to(val[1])
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    return tmp_path / "photos"


def test_folders_globs_and_files_in_order_without_repeats(photos):
    a, b = str(photos / "a.jpg"), str(photos / "sub" / "b.jpg")
    records = collect_images([str(photos / "sub"), str(photos), f"{photos}/*.jpg"])
    assert records == [ImageRecord(1, b, b), ImageRecord(2, a, a)]


def test_text_lists_are_relative_to_their_folder_or_the_image_root(photos, tmp_path):
    (photos / "list.txt").write_text("# kept photos\nsub/b.jpg\n\n  a.jpg  \nmissing.jpg\nhttps://example.com/c.jpg\n")
    records = collect_images([str(photos / "list.txt")])
    expected = [
        str(photos / "sub" / "b.jpg"),
        str(photos / "a.jpg"),
        str(photos / "missing.jpg"),
        "https://example.com/c.jpg",
    ]
    assert records == [
        ImageRecord(i, p, p) for i, p in enumerate(expected, start=1)
    ]  # a missing file is the run's to report
    (tmp_path / "elsewhere.lst").write_text("a.jpg\n")
    assert collect_images([str(tmp_path / "elsewhere.lst")], image_root=str(photos))[0].path == str(photos / "a.jpg")


def test_a_coco_json_keeps_its_ids_and_file_names(shared_data):
    json_file = shared_data / "tiny_coco" / "annotations" / "instances_val2017.json"
    images = json.loads(json_file.read_text())["images"]
    root = shared_data / "tiny_coco" / "val2017"
    records = collect_images([str(json_file)], image_root=str(root))
    assert [(r.image_id, r.file_name) for r in records] == [(im["id"], im["file_name"]) for im in images]
    assert all(r.path == os.path.join(root, r.file_name) and os.path.isfile(r.path) for r in records)


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_bad_inputs_are_named_in_one_sentence(tmp_path, photos, shared_data):
    val = str(shared_data / "tiny_coco" / "annotations" / "instances_val2017.json")
    bad = {
        "empty.txt": ("# nothing\n\n", "--input {}: the file lists no image path (one a line)"),
        "binary.txt": (b"\xff\xfe\x00", "--input {}: not a text file of image paths (it is not UTF-8 text)"),
        "list.json": ([1, 2], "--input {}: not a COCO JSON file with images (no 'images' list, or an empty one)"),
        "noid.json": (
            {"images": [{"file_name": "a.jpg"}]},
            "--input {}: images[0] has no integer 'id' and string 'file_name': {{'file_name': 'a.jpg'}}",
        ),
        "twice.json": (
            {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "sub/b.jpg"}]},
            "--input {}: images[1] repeats the image id 1",
        ),
    }
    for name, (content, message) in bad.items():
        path = _write(tmp_path / name, content)
        with pytest.raises(ValueError) as error:
            collect_images([path], image_root=str(photos))
        assert str(error.value) == message.format(path), name
    with pytest.raises(
        ValueError,
        match=rf"^--input {re.escape(val)}: a COCO JSON gives its own image ids, and must be the only input$",
    ):
        collect_images([str(photos), val])
    with pytest.raises(ValueError) as error:
        collect_images([val])  # its images are in val2017/, not beside the JSON
    root = os.path.dirname(val)
    assert str(error.value) == (
        f"--input {val}: none of its first 16 images is under {root} (the first: 000000397133.jpg); give the "
        "folder its file_name values are relative to with --image-root"
    )
    with pytest.raises(ValueError, match=r"no such file or folder, and no file matches it as a glob$"):
        collect_images([str(tmp_path / "nowhere" / "*.jpg")])
    with pytest.raises(ValueError, match=r"^--input is required"):
        collect_images([])
