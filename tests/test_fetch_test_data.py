"""``python -m tests.fetch_test_data``: the test suite's files from their sources, verified,
atomic and idempotent (against a loopback mirror of raw.githubusercontent.com). The fetcher
lives with the tests, outside the gcnet package, since only they need it."""

import hashlib
from pathlib import Path

import pytest
import yaml

import gcnet.data

from .fetch_test_data import MANIFEST, RAW_GITHUB, downloads, prepare_test_data
from .helpers import TEST_DATA_COMMAND, run_tool, serve_directory


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(shared_data, tmp_path):
    """A folder laid out as raw.githubusercontent.com for every file of the manifest, its
    content that of the test data in use."""
    folder = tmp_path / "mirror"
    for relative, url, _ in downloads(yaml.safe_load(MANIFEST.read_text())):
        served = folder / url[len(RAW_GITHUB) + 1 :]
        served.parent.mkdir(parents=True, exist_ok=True)
        served.symlink_to(shared_data / relative)
    return folder


def prepare(output, url):
    return run_tool("-m", "tests.fetch_test_data", "--output", output, "--mirror", url, timeout=600)


def test_downloads_verifies_and_keeps(mirror, shared_data, tmp_path):
    manifest = yaml.safe_load(MANIFEST.read_text())
    output = tmp_path / "test-data"
    with serve_directory(mirror) as (url, requests):
        result = prepare(output, url)
        assert result.returncode == 0, result.stderr
        files = list(downloads(manifest))
        total = len(files) + len(manifest["generated"])
        assert f"({total} files written)" in result.stdout
        assert len(requests) == len(files)
        for relative, _, sha256 in files:
            assert sha256_of(output / relative) == sha256 == sha256_of(shared_data / relative), relative
        for relative, entry in manifest["generated"].items():
            assert sha256_of(output / relative) == entry["sha256"], relative
        written = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file())
        assert written == sorted([r for r, _, _ in files] + list(manifest["generated"]) + ["MANIFEST.md"])

        # A second run keeps every file and makes no request; a damaged file is fetched again.
        again = prepare(output, url)
        assert again.returncode == 0 and "(0 files written)" in again.stdout
        assert len(requests) == len(files)
        (output / "demo" / "park_bench.jpg").write_bytes(b"damaged")
        repaired = prepare(output, url)
        assert repaired.returncode == 0 and "(1 files written)" in repaired.stdout
        assert sha256_of(output / "demo" / "park_bench.jpg") == sha256_of(shared_data / "demo" / "park_bench.jpg")


def test_same_layout_as_the_shared_data(shared_data):
    """Every file the manifest lists is where the tests read it, and the generated CamVid pair
    lists are those of the data in use."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    for relative, _, sha256 in downloads(manifest):
        assert sha256_of(shared_data / relative) == sha256, relative
    for relative in ("camvid/camvid_subset_train.txt", "camvid/camvid_subset_val.txt"):
        assert sha256_of(shared_data / relative) == manifest["generated"][relative]["sha256"]


@pytest.mark.parametrize("command", ["fetcher", "deprecated"])
def test_missing_file_is_one_line_and_leaves_the_folder_incomplete(mirror, tmp_path, command):
    """Also through the README's former command, which says its new name once and runs it.
    (The first file is the missing one: the run stops at it.)"""
    _, first_url, _ = next(iter(downloads(yaml.safe_load(MANIFEST.read_text()))))
    first = first_url[len(RAW_GITHUB) + 1 :]
    (mirror / first).unlink()
    output = tmp_path / "test-data"
    with serve_directory(mirror) as (url, _):
        if command == "fetcher":
            result = prepare(output, url)
        else:
            result = run_tool("tools/prepare_datasets.py", "test-data", "--output", output, "--mirror", url)
            assert result.stderr.startswith("prepare_datasets: test-data is now `python -m tests.fetch_test_data`\n")
            result.stderr = result.stderr.split("\n", 1)[1]
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"fetch_test_data: Could not download {url}/{first}: "
        "HTTP 404 File not found. Retry, or set GCNET_TEST_DATA to a copy of the test data."
    )
    assert not (output / "MANIFEST.md").exists()
    assert not list(output.rglob("*.partial*"))


def test_an_unquoted_digest_is_one_line_naming_its_file(tmp_path):
    manifest = tmp_path / "my_data.yaml"
    manifest.write_text("datasets:\n  demo:\n    url: https://example.org/\n    files:\n      a.jpg: 12345678\n")
    message = r"^my_data\.yaml: demo/a\.jpg: sha256 12345678 is not 64 hex digits \(YAML read it as int: quote it\)$"
    with pytest.raises(ValueError, match=message):
        prepare_test_data(str(manifest), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_the_fetcher_is_not_in_the_package():
    assert not list(Path(gcnet.__file__).parent.rglob("*test_data*"))
    assert not hasattr(gcnet.data, "prepare_test_data")


def test_tests_without_data_stop_at_collection_with_one_line(tmp_path):
    result = run_tool(
        "-m",
        "pytest",
        "tests/data/test_balloon.py",
        "-q",
        "-p",
        "no:cacheprovider",
        env={"GCNET_TEST_DATA": str(tmp_path / "none")},
        timeout=600,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    message = f"No test data in $GCNET_TEST_DATA={tmp_path / 'none'}: download it with `{TEST_DATA_COMMAND}`"
    assert f"! _pytest.outcomes.Exit: {message} !" in result.stdout.splitlines()
    assert "error" not in result.stdout.lower()
