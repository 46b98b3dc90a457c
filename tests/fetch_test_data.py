"""The real files of the test suite, fetched from their public sources:

    python -m tests.fetch_test_data [--output DIR] [--mirror URL]

``tests/test_data.yaml`` lists every file the tests read: copies of files of public
repositories at pinned commits, each with its sha256, and files made from those (the balloon
COCO annotations, the CamVid pair lists), checked the same way. :func:`prepare_test_data`
writes them to a folder in the layout the tests expect (default: ``$GCNET_TEST_DATA``, else
``datasets/gcnet-test-data`` in the checkout), each file atomically; a file already there with
the right digest is kept, so a second run downloads nothing.
"""

import argparse
import json
import logging
import os
import re
import sys
from typing import Callable, Dict, Iterator, Mapping, Tuple

import yaml

from gcnet.data.balloon import via_to_coco
from gcnet.utils.download import download_file, sha256sum
from gcnet.utils.file_io import atomic_write

from .helpers import REPO_ROOT, TEST_DATA_ENV, TEST_DATA_FALLBACKS

logger = logging.getLogger(__name__)

MANIFEST = REPO_ROOT / "tests" / "test_data.yaml"

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


def _checked_sha256(sha256, where: str) -> str:
    """``sha256`` when it is 64 hex digits, else a one-line error naming ``where`` it is."""
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        kind = "" if isinstance(sha256, str) else f" (YAML read it as {type(sha256).__name__}: quote it)"
        raise ValueError(f"{where}: sha256 {sha256!r} is not 64 hex digits{kind}")
    return sha256


def downloads(manifest: Mapping, name: str = MANIFEST.name) -> Iterator[Tuple[str, str, str]]:
    """(relative path, URL, sha256) of every file to download of ``manifest`` (read from the
    file ``name``)."""
    for folder, dataset in manifest["datasets"].items():
        for relative, entry in dataset["files"].items():
            url, sha256 = (
                (entry["url"], entry["sha256"]) if isinstance(entry, dict) else (dataset["url"] + relative, entry)
            )
            yield f"{folder}/{relative}", url, _checked_sha256(sha256, f"{name}: {folder}/{relative}")


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
    name = os.path.basename(manifest_file)
    missing = [d for d in downloads(manifest, name) if not _is_intact(os.path.join(root, d[0]), d[2])]
    generated = [
        (relative, entry)
        for relative, entry in manifest["generated"].items()
        if not _is_intact(os.path.join(root, relative), _checked_sha256(entry["sha256"], f"{name}: {relative}"))
    ]
    marker = os.path.join(root, COMPLETE_MARKER)
    if (missing or generated) and os.path.exists(marker):
        os.remove(marker)  # the folder is incomplete until this run ends
    for relative, url, sha256 in missing:
        if mirror and url.startswith(RAW_GITHUB):
            url = mirror.rstrip("/") + url[len(RAW_GITHUB) :]
        way_out = f"Retry, or set {TEST_DATA_ENV} to a copy of the test data."
        download_file(url, os.path.join(root, relative), sha256, progress=False, way_out=way_out)
    for relative, entry in generated:
        os.makedirs(os.path.dirname(os.path.join(root, relative)), exist_ok=True)
        _make(root, relative, entry)
    note = f"# gcnet test data\n\nMade by `python -m tests.fetch_test_data` from {os.path.basename(manifest_file)}.\n"
    atomic_write(marker, lambda f: f.write(note.encode()))
    written = len(missing) + len(generated)
    logger.info(f"{root}: {written} files written, the others were already there")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fetch_test_data", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        default=os.environ.get(TEST_DATA_ENV) or str(TEST_DATA_FALLBACKS[-1]),
        help=f"where to write them (default: ${TEST_DATA_ENV}, else {TEST_DATA_FALLBACKS[-1].relative_to(REPO_ROOT)})",
    )
    parser.add_argument("--mirror", default="", help=f"a base URL to use instead of {RAW_GITHUB}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = prepare_test_data(str(MANIFEST), args.output, args.mirror)
    except (OSError, ValueError) as e:
        print(f"fetch_test_data: {e}", file=sys.stderr)
        return 1
    print(f"Test data in {args.output} ({written} files written). Run the tests with: python -m pytest tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
