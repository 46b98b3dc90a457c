"""The real files of the test suite, fetched from their public sources.

``tests/test_data.yaml`` lists every file the tests read: copies of files of public
repositories at pinned commits, each with its sha256, and files made from those (the balloon
COCO annotations, the CamVid pair lists), checked the same way. :func:`prepare_test_data`
writes them to a folder in the layout the tests expect, each file atomically; a file already
there with the right digest is kept, so a second run downloads nothing.
"""
import json
import logging
import os
from typing import Callable, Dict, Iterator, Mapping, Tuple

import yaml

from gcnet.utils.download import download_file, sha256sum
from gcnet.utils.file_io import atomic_write

from .balloon import via_to_coco

__all__ = ["prepare_test_data", "COMPLETE_MARKER"]

logger = logging.getLogger(__name__)

# Written last: a folder holding it is complete.
COMPLETE_MARKER = "MANIFEST.md"
RAW_GITHUB = "https://raw.githubusercontent.com"


def _balloon_coco(root: str, split: str) -> bytes:
    folder = os.path.join(root, "balloon", split)
    return json.dumps(via_to_coco(os.path.join(folder, "via_region_data.json"), folder, split)).encode()


def _camvid_pairs(root: str, split: str) -> bytes:
    """``<split>/<name> <split>annot/<name>`` for every image of the split, in name order."""
    names = sorted(os.listdir(os.path.join(root, "camvid", split)))
    return "".join(f"{split}/{n} {split}annot/{n}\n" for n in names).encode()


RECIPES: Dict[str, Callable[[str, str], bytes]] = {"balloon_coco": _balloon_coco, "camvid_pairs": _camvid_pairs}


def _downloads(manifest: Mapping) -> Iterator[Tuple[str, str, str]]:
    """(relative path, URL, sha256) of every file to download."""
    for folder, dataset in manifest["datasets"].items():
        for relative, entry in dataset["files"].items():
            url, sha256 = (entry["url"], entry["sha256"]) if isinstance(entry, dict) else (dataset["url"] + relative, entry)
            yield f"{folder}/{relative}", url, sha256


def _is_intact(path: str, sha256: str) -> bool:
    return os.path.isfile(path) and sha256sum(path) == sha256


def _make(root: str, relative: str, entry: Mapping) -> None:
    path = os.path.join(root, relative)
    content = RECIPES[entry["recipe"]](root, entry["split"])
    atomic_write(path, lambda f: f.write(content))
    if sha256sum(path) != entry["sha256"]:
        os.remove(path)
        raise ValueError(f"{path}: made from the downloaded files, but its sha256 is not the one in the manifest")


def prepare_test_data(manifest_file: str, root: str, mirror: str = "") -> int:
    """Write the files of ``manifest_file`` under ``root``; return how many were written.

    Args:
        mirror: a base URL that replaces ``https://raw.githubusercontent.com`` in every URL (a
            local mirror, or a loopback server in tests).

    Raises:
        DownloadError: a file could not be downloaded (the message names it and the reason).
        ValueError: a file does not have its sha256.
    """
    with open(manifest_file) as f:
        manifest = yaml.safe_load(f)
    downloads = [d for d in _downloads(manifest) if not _is_intact(os.path.join(root, d[0]), d[2])]
    generated = [
        (relative, entry)
        for relative, entry in manifest["generated"].items()
        if not _is_intact(os.path.join(root, relative), entry["sha256"])
    ]
    marker = os.path.join(root, COMPLETE_MARKER)
    if (downloads or generated) and os.path.exists(marker):
        os.remove(marker)  # the folder is incomplete until this run ends
    for relative, url, sha256 in downloads:
        if mirror and url.startswith(RAW_GITHUB):
            url = mirror.rstrip("/") + url[len(RAW_GITHUB) :]
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        download_file(url, path, sha256, progress=False, way_out="Retry, or set GCNET_TEST_DATA to a copy of the test data.")
    for relative, entry in generated:
        os.makedirs(os.path.dirname(os.path.join(root, relative)), exist_ok=True)
        _make(root, relative, entry)
    note = f"# gcnet test data\n\nMade by `python tools/prepare_datasets.py test-data` from {os.path.basename(manifest_file)}.\n"
    atomic_write(marker, lambda f: f.write(note.encode()))
    written = len(downloads) + len(generated)
    logger.info(f"{root}: {written} files written, the others were already there")
    return written
