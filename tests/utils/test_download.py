"""Every download has a connect and a read timeout and ends in one line naming the URL, the
reason and the way out, with no partial file, against loopback servers that stall, close
early, lie about their size and redirect in loops or to other hosts."""

import socket

import pytest

from gcnet.utils.download import (
    DEFAULT_TIMEOUTS,
    TIMEOUT_ENV,
    DownloadError,
    download_file,
    download_timeouts,
    redirect_refusal,
    sha256sum,
    unreachable,
)
from gcnet.utils.download_cache import cache_path, download_verified, read_provenance

from ..helpers import serve_directory
from ..loopback_servers import close_after, redirect, serve, silent, stall_after

CHAIN_OF_12 = {f"/{i}": f"/{i + 1}" for i in range(1, 12)}
HINT = f"({TIMEOUT_ENV}=CONNECT,READ sets the seconds to wait (default 10,60))"
WAY_OUT = "Copy the file here."


@pytest.fixture
def short_timeouts(monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "5,0.5")


def files_in(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "behaviour,reason",
    [
        (silent, f"the server sent nothing for 0.5 s {HINT}"),
        (stall_after(100, 1000), f"the server stalled after 100 bytes and sent nothing more for 0.5 s {HINT}"),
        (close_after(1024, 1 << 20), "the connection closed after 1024 of the 1048576 bytes the server announced"),
        (redirect({"/file.pth": "/a", "/a": "/b", "/b": "/a"}), "it redirects in a loop or more than 10 times"),
        (redirect({"/file.pth": "/1", **CHAIN_OF_12}), "it redirects in a loop or more than 10 times"),
    ],
    ids=["sends-nothing", "stalls", "closes-early", "redirect-loop", "too-many-redirects"],
)
def test_a_failed_download_is_one_line_and_leaves_nothing(behaviour, reason, short_timeouts, tmp_path):
    with serve(behaviour) as (base, requests):
        with pytest.raises(DownloadError) as info:
            download_file(f"{base}/file.pth", str(tmp_path / "out" / "file.pth"), way_out=WAY_OUT, progress=False)
    assert str(info.value) == f"Could not download {base}/file.pth: {reason}. {WAY_OUT}"
    assert (info.value.url, info.value.reason, info.value.way_out) == (f"{base}/file.pth", reason, WAY_OUT)
    assert files_in(tmp_path) == [] and requests[0] == "/file.pth"


def test_a_redirect_to_another_host_is_followed_and_recorded(tmp_path):
    """Bytes are trusted by their digest, wherever they come from; the cache records where."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "weights.pth").write_bytes(b"weights" * 100)
    digest = sha256sum(str(served / "weights.pth"))
    with serve_directory(served) as (other, _):
        target = other.replace("127.0.0.1", "localhost") + "/weights.pth"
        with serve(redirect({"/w-0123.pth": target})) as (base, _):
            download = download_file(f"{base}/w-0123.pth", str(tmp_path / "w.pth"), digest, progress=False)
            assert (download.url, download.final_url, download.sha256) == (f"{base}/w-0123.pth", target, digest)
            cached = download_verified(f"{base}/w-0123.pth", digest, str(tmp_path / "cache"), progress=False)
    assert cached == cache_path(f"{base}/w-0123.pth", str(tmp_path / "cache"))
    assert read_provenance(cached).final_url == target and read_provenance(cached).sha256 == digest


def test_a_wrong_digest_after_a_redirect_keeps_nothing(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "weights.pth").write_bytes(b"not what was pinned")
    with serve_directory(served, {"/pinned.pth": "/weights.pth"}) as (base, _):
        wrong = r"^Downloaded .*/pinned\.pth has sha256 [0-9a-f]{64}, expected 0{64}\.\.\.; the file was deleted"
        with pytest.raises(ValueError, match=wrong):
            download_file(f"{base}/pinned.pth", str(tmp_path / "out" / "pinned.pth"), "0" * 64, progress=False)
    assert files_in(tmp_path / "out") == []


def test_redirects_never_leave_https():
    assert redirect_refusal("https://a.org/x.pkl", "http://a.org/x.pkl") == (
        "https://a.org/x.pkl redirects to http://a.org/x.pkl, which is not https; refused"
    )
    assert redirect_refusal("http://a.org/x", "ftp://a.org/x") == (
        "http://a.org/x redirects to ftp://a.org/x, which is neither http nor https; refused"
    )
    assert redirect_refusal("https://a.org/x", "https://b.org/x") is None
    assert redirect_refusal("http://a.org/x", "https://a.org/x") is None


@pytest.mark.parametrize(
    "location,reason",
    [
        (
            "ftp://127.0.0.1/x.pth",
            "{base}/file.pth redirects to ftp://127.0.0.1/x.pth, which is neither http nor https; refused",
        ),
        ("file:///etc/passwd", "HTTP 302 Found - Redirection to url 'file:///etc/passwd' is not allowed"),
    ],
)
def test_a_redirect_out_of_http_is_refused(location, reason, tmp_path):
    with serve(redirect({"/file.pth": location})) as (base, requests):
        with pytest.raises(DownloadError) as info:
            download_file(f"{base}/file.pth", str(tmp_path / "file.pth"), progress=False)
    assert info.value.reason == reason.format(base=base) and requests == ["/file.pth"]
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "value,expected",
    [("", DEFAULT_TIMEOUTS), ("30", (30.0, 30.0)), (" 3,120 ", (3.0, 120.0)), ("0.5,2", (0.5, 2.0))],
)
def test_timeouts_are_set_by_the_environment(value, expected, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    assert download_timeouts() == expected


@pytest.mark.parametrize("value", ["ten", "0", "-1", "1,2,3", "inf", "nan", "5,"])
def test_a_bad_timeout_is_one_line(value, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(ValueError) as info:
        download_timeouts()
    assert str(info.value) == (
        f"{TIMEOUT_ENV}={value!r}: expected the seconds to wait for a connection and for data, "
        f"e.g. {TIMEOUT_ENV}=10,120, or one positive number for both"
    )


def test_only_http_urls_are_downloaded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not to be copied")
    with pytest.raises(DownloadError, match=r"^Could not download file://.*secret\.txt: not an http or https URL\.$"):
        download_file(f"file://{secret}", str(tmp_path / "copy.txt"))
    assert not (tmp_path / "copy.txt").exists()


def test_unreachable_says_why_quickly(short_timeouts):
    with serve(silent) as (base, _):
        assert unreachable(f"{base}/x") == f"the server sent nothing for 0.5 s {HINT}"
    with serve(redirect({})) as (base, _):
        assert unreachable(f"{base}/missing") == ""  # any HTTP answer: the server is there
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/x"
    assert unreachable(closed) == "[Errno 111] Connection refused"
