"""The download cache: a file per URL, host and scheme included, used only with the record of
its arrival from that URL and the sha256 it arrived with."""

import hashlib
import json

import pytest

from gcnet.utils.download_cache import (
    RECORD_SUFFIX,
    Provenance,
    cache_path,
    cached_file_problem,
    download_verified,
    import_file,
    read_provenance,
)

from ..helpers import serve_directory


def test_the_cache_path_keeps_scheme_host_and_port(tmp_path):
    root = str(tmp_path)
    trusted = cache_path("https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl", root)
    assert trusted == f"{root}/downloads/https/dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
    mimics = [
        "http://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl",
        "https://dl.fbaipublicfiles.com:8443/detectron2/ImageNetPretrained/MSRA/R-50.pkl",
        "https://evil.org/detectron2/ImageNetPretrained/MSRA/R-50.pkl",
        "https://dl.fbaipublicfiles.com.evil.org/detectron2/ImageNetPretrained/MSRA/R-50.pkl",
        "https://evil.org/dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl",
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl?x=1",
    ]
    paths = [cache_path(url, root) for url in mimics]
    assert trusted not in paths and len(set(paths)) == len(paths)
    # Credentials and fragments do not change what the server sends, nor the file.
    same = "https://user:pw@DL.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl#x"
    assert cache_path(same, root) == trusted


@pytest.mark.parametrize(
    "url",
    [
        "https://a.org/models/../../../../etc/passwd",
        "https://a.org/a/./b.pth",
        "https://a.org//b.pth",
        "https://a.org/models/",
        "https://a.org",
        "ftp://a.org/x.pth",
        "file:///etc/passwd",
        "https://a.org/x.pth" + RECORD_SUFFIX,
        "https://a.org/x.partial.pth",
        "https://a.org:http/x.pth",
    ],
)
def test_urls_that_cannot_name_a_cached_file_are_refused(url, tmp_path):
    with pytest.raises(ValueError, match=r"^Cannot download "):
        cache_path(url, str(tmp_path))


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "weights.pth").write_bytes(b"weights" * 1000)
    with serve_directory(folder) as (base, requests):
        yield f"{base}/weights.pth", requests, hashlib.sha256((folder / "weights.pth").read_bytes()).hexdigest()


def test_a_download_records_where_it_came_from(served, tmp_path):
    url, requests, digest = served
    path = download_verified(url, digest, str(tmp_path / "cache"), progress=False)
    assert read_provenance(path) == Provenance(url=url, final_url=url, sha256=digest)
    assert json.loads(open(path + RECORD_SUFFIX).read()) == dict(url=url, final_url=url, sha256=digest, copied_from="")
    assert download_verified(url, digest, str(tmp_path / "cache"), progress=False) == path and len(requests) == 1


@pytest.mark.parametrize("tamper", ["no record", "record of another URL", "bytes changed", "record unreadable"])
def test_a_cached_file_without_its_record_is_downloaded_again(tamper, served, tmp_path, caplog):
    """A file put in the cache by hand or by another program, or altered, is never used."""
    url, requests, digest = served
    path = cache_path(url, str(tmp_path / "cache"))
    download_verified(url, "", str(tmp_path / "cache"), progress=False)
    record = read_provenance(path)
    if tamper == "no record":
        problem = "it has no record of where it came from"
        (tmp_path / "cache").joinpath(path + RECORD_SUFFIX).unlink()
        open(path, "wb").write(b"planted")
    elif tamper == "record of another URL":
        problem = "its record says it came from https://elsewhere.org/weights.pth"
        json.dump(dict(record.__dict__, url="https://elsewhere.org/weights.pth"), open(path + RECORD_SUFFIX, "w"))
    elif tamper == "bytes changed":
        problem = f"its sha256 is {hashlib.sha256(b'planted').hexdigest()}, not the {digest} it arrived with"
        open(path, "wb").write(b"planted")
    else:
        problem = "it has no record of where it came from"
        open(path + RECORD_SUFFIX, "w").write("{not json")
    assert cached_file_problem(path, url) == problem
    assert download_verified(url, "", str(tmp_path / "cache"), progress=False) == path
    assert f"The cached {path} cannot be used ({problem}); downloading {url} again" in caplog.text
    assert open(path, "rb").read() == b"weights" * 1000 and read_provenance(path).sha256 == digest
    assert len(requests) == 2


def test_an_imported_copy_is_checked_and_recorded(served, tmp_path):
    url, requests, digest = served
    copy = tmp_path / "copy.pth"
    copy.write_bytes(b"weights" * 1000)
    path = import_file(url, str(copy), digest[:8], str(tmp_path / "cache"))
    assert read_provenance(path) == Provenance(url=url, final_url="", sha256=digest, copied_from=str(copy))
    assert download_verified(url, digest[:8], str(tmp_path / "cache")) == path and requests == []
    copy.write_bytes(b"another file")
    wrong = rf"^{copy} has sha256 [0-9a-f]{{64}}, expected {digest[:8]}\.\.\.: it is not the file of {url}$"
    with pytest.raises(ValueError, match=wrong):
        import_file(url, str(copy), digest[:8], str(tmp_path / "cache"))
    assert open(path, "rb").read() == b"weights" * 1000 and read_provenance(path).sha256 == digest  # kept as it was
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth: no such file \(the copy of .* to import\)$"):
        import_file(url, str(tmp_path / "nowhere.pth"), "", str(tmp_path / "cache"))
