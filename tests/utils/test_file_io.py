"""Files that are complete or absent: atomic_write (file objects) and atomic_path (writers that
take a file name)."""

import pytest

from gcnet.utils import atomic_path, atomic_write


def test_atomic_write_replaces_only_with_complete_content(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(str(path), fail)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    atomic_write(str(path), lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_path_keeps_the_extension_and_cleans_up(tmp_path):
    path = tmp_path / "video.mp4"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as partial:
            assert partial == str(tmp_path / "video.partial.mp4")
            open(partial, "wb").write(b"half")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["video.mp4"]
    with atomic_path(str(path)) as partial:
        open(partial, "wb").write(b"new")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["video.mp4"]
