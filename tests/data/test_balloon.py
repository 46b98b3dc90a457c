"""The balloon dataset: VIA -> COCO conversion, the downloader (and archives that are missing
or damaged), and its registration."""

import json
import re
import zipfile

import pytest

from gcnet.data import prepare_dataset, via_to_coco

from ..helpers import run_tool, serve_directory

COCO_PARTS = ("images", "annotations", "categories")


def reference(shared_data, split):
    return json.loads((shared_data / "balloon" / "annotations" / f"balloon_instances_{split}.json").read_text())


@pytest.mark.parametrize("split,num_images,num_instances", [("train", 61, 255), ("val", 13, 50)])
def test_via_conversion_matches_reference(shared_data, split, num_images, num_instances):
    folder = shared_data / "balloon" / split
    coco = via_to_coco(str(folder / "via_region_data.json"), str(folder), split)
    assert (len(coco["images"]), len(coco["annotations"])) == (num_images, num_instances)
    expected = reference(shared_data, split)
    for part in COCO_PARTS:
        assert coco[part] == expected[part], part


def build_release_zip(shared_data, path):
    """A zip laid out as the public balloon release (balloon/{train,val}/, plus macOS litter)."""
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "val"):
            for file in sorted((shared_data / "balloon" / split).iterdir()):
                archive.write(file, f"balloon/{split}/{file.name}")
        archive.writestr("__MACOSX/balloon/._train", b"")


def test_prepare_datasets_downloads_and_converts(shared_data, tmp_path):
    served = tmp_path / "server"
    served.mkdir()
    build_release_zip(shared_data, served / "balloon_dataset.zip")
    root = tmp_path / "datasets"
    with serve_directory(served) as (url, requests):
        result = run_tool("tools/prepare_datasets.py", "balloon", "--root", root, "--url", f"{url}/balloon_dataset.zip")
        assert result.returncode == 0, result.stderr
        assert requests == ["/balloon_dataset.zip"]
        for split in ("train", "val"):
            coco = json.loads((root / "balloon" / "annotations" / f"balloon_instances_{split}.json").read_text())
            expected = reference(shared_data, split)
            assert all(coco[part] == expected[part] for part in COCO_PARTS)
            assert all((root / "balloon" / split / im["file_name"]).is_file() for im in coco["images"])
        assert sorted(p.name for p in root.iterdir()) == ["balloon"]  # no staging folder left

        again = run_tool("tools/prepare_datasets.py", "balloon", "--root", root, "--url", f"{url}/balloon_dataset.zip")
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines() == [
            f"{root / 'balloon'} is already prepared (61 train and 13 val images); left as it is"
        ]
        assert requests == ["/balloon_dataset.zip"]

        # A partial folder is reported with what is wrong, and left as it is.
        first = (
            root
            / "balloon"
            / "val"
            / json.loads((root / "balloon" / "annotations" / "balloon_instances_val.json").read_text())["images"][0][
                "file_name"
            ]
        )
        first.unlink()
        partial = run_tool(
            "tools/prepare_datasets.py", "balloon", "--root", root, "--url", f"{url}/balloon_dataset.zip"
        )
        assert partial.returncode == 1
        assert partial.stderr.strip().splitlines() == [
            f"prepare_datasets: {root / 'balloon'} is incomplete: 1 of its 13 val images are missing or empty, e.g. "
            f"{first}; "
            "remove it and run `python tools/prepare_datasets.py balloon` again"
        ]
        assert requests == ["/balloon_dataset.zip"]


def test_prepare_datasets_reports_http_errors(tmp_path):
    (tmp_path / "server").mkdir()
    with serve_directory(tmp_path / "server") as (url, _):
        result = run_tool(
            "tools/prepare_datasets.py", "balloon", "--root", tmp_path / "datasets", "--url", f"{url}/nothing.zip"
        )
    assert result.returncode == 1
    assert f"Could not download {url}/nothing.zip" in result.stderr and "404" in result.stderr
    assert list((tmp_path / "datasets").iterdir()) == []


LOAD_SPLITS = """
from detectron2.data import DatasetCatalog, MetadataCatalog
import gcnet.data
for split in ("train", "val"):
    dicts = DatasetCatalog.get(f"balloon_{split}")
    classes = MetadataCatalog.get(f"balloon_{split}").thing_classes
    print(split, len(dicts), sum(len(d["annotations"]) for d in dicts), classes)
"""


def test_builtin_balloon_reads_detectron2_datasets(datasets_root):
    result = run_tool("-c", LOAD_SPLITS, env={"DETECTRON2_DATASETS": str(datasets_root)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["train 61 255 ['balloon']", "val 13 50 ['balloon']"]


def test_missing_balloon_folder_says_how_to_create_it(tmp_path):
    result = run_tool("-c", LOAD_SPLITS, env={"DETECTRON2_DATASETS": str(tmp_path / "nowhere")})
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("FileNotFoundError: Dataset 'balloon_train' not found")
    assert f"{tmp_path / 'nowhere'}/balloon/annotations/balloon_instances_train.json" in message
    assert f"DETECTRON2_DATASETS={tmp_path / 'nowhere'}" in message
    assert "python tools/prepare_datasets.py balloon" in message


def damaged_copies(shared_data, folder):
    """(name, archive, expected message) of balloon archives that cannot be used."""
    good = folder / "good.zip"
    build_release_zip(shared_data, good)
    truncated = folder / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    not_zip = folder / "page.zip"
    not_zip.write_bytes(b"<html>Sign in to download</html>")
    flipped = folder / "flipped.zip"  # a bit of a compressed member flipped: a CRC error on extraction
    with zipfile.ZipFile(flipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(shared_data / "balloon" / "train" / "via_region_data.json", "balloon/train/via_region_data.json")
    data = bytearray(flipped.read_bytes())
    data[200] ^= 0xFF
    flipped.write_bytes(bytes(data))
    other = folder / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "not the balloon release")
    way_out = (
        "download balloon_dataset.zip again (on a machine without network access: elsewhere, then run "
        "python tools/prepare_datasets.py balloon --url /path/to/balloon_dataset.zip)"
    )
    return [
        (truncated, rf"^{truncated} is not a complete zip archive \(.*\); " + re.escape(way_out) + "$"),
        (not_zip, rf"^{not_zip} is not a complete zip archive \(File is not a zip file\); download balloon_dataset"),
        (flipped, rf"^{flipped} is not a complete zip archive \(.*\); download balloon_dataset\.zip again"),
        (other, rf"^{other} is not the balloon release: it has no train/ and val/ folders with via_region_data\.json$"),
        (folder / "missing.zip", rf"^{folder / 'missing.zip'}: no such file \(expected balloon_dataset\.zip, or"),
    ]


def test_a_missing_or_damaged_archive_is_one_line_and_writes_nothing(shared_data, tmp_path):
    (tmp_path / "archives").mkdir()
    for archive, message in damaged_copies(shared_data, tmp_path / "archives"):
        root = tmp_path / "datasets" / archive.stem
        with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
            prepare_dataset("balloon", str(root), url=str(archive))
        assert "\n" not in str(info.value)
        assert not root.exists() or list(root.iterdir()) == [], archive  # no balloon/, no staging folder
    page = tmp_path / "archives" / "page.zip"
    result = run_tool("tools/prepare_datasets.py", "balloon", "--root", tmp_path / "cli", "--url", page)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"prepare_datasets: {page} is not a complete zip archive")
    assert result.stderr.count("\n") == 1
