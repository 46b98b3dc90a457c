"""Reading images of every common mode, and finding images from files, folders and globs."""

import numpy as np
import pytest
from PIL import Image

from gcnet.data import list_images, read_image


@pytest.fixture
def rgb():
    g = np.random.default_rng(0)
    return g.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def test_rgb_and_bgr(rgb, tmp_path):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(read_image(str(tmp_path / "a.png"), format="RGB"), rgb)
    bgr = read_image(str(tmp_path / "a.png"))
    assert bgr.dtype == np.uint8 and bgr.flags.c_contiguous and np.array_equal(bgr, rgb[:, :, ::-1])


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1"])
def test_every_mode_becomes_three_8_bit_channels(rgb, mode, tmp_path):
    image = Image.fromarray(rgb).convert(mode)
    path = tmp_path / ("a.jpg" if mode == "CMYK" else "a.png")
    image.save(path)
    out = read_image(str(path), format="RGB")
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8
    if mode != "CMYK":  # lossless: the same pixels as PIL's own RGB conversion
        assert np.array_equal(out, np.asarray(image.convert("RGB")))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 514, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "depth.png")
    assert Image.open(tmp_path / "depth.png").mode.startswith("I")
    out = read_image(str(tmp_path / "depth.png"), format="RGB")
    expected = np.array([[0, 1, 128], [255, 2, 4]], dtype=np.uint8)
    assert np.array_equal(out, np.repeat(expected[:, :, None], 3, axis=2))


def test_exif_orientation_is_applied(rgb, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the stored 12x20 image shows as 20x12
    Image.fromarray(rgb).save(tmp_path / "rotated.png", exif=exif)
    assert read_image(str(tmp_path / "rotated.png")).shape == (20, 12, 3)


@pytest.mark.parametrize("content", [b"", b"not an image", "truncated"])
def test_unreadable_files_are_named(content, shared_data, tmp_path):
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        content = (shared_data / "demo" / "park_bench.jpg").read_bytes()[:4000]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{path}: not a readable image"):
        read_image(str(path))
    with pytest.raises(ValueError, match="not a readable image"):
        read_image(str(tmp_path / "missing.png"))


def test_list_images_from_files_folders_and_globs(tmp_path):
    for rel in ["a.jpg", "b.PNG", "notes.txt", "sub/c.png"]:
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = list_images([str(tmp_path), str(tmp_path / "a.jpg"), str(tmp_path / "*.jpg")])
    assert found == [
        (str(tmp_path / "a.jpg"), "a.jpg"),
        (str(tmp_path / "b.PNG"), "b.PNG"),
        (str(tmp_path / "sub" / "c.png"), "sub/c.png"),
    ]
    assert list_images([str(tmp_path / "sub" / "*")]) == [(str(tmp_path / "sub" / "c.png"), "c.png")]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("missing.jpg", "no such file or folder, and no file matches it as a glob"),
        ("*.gif", "no such file or folder, and no file matches it as a glob"),
        ("empty", "the folder has no image files"),
    ],
)
def test_list_images_names_what_is_missing(spec, message, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError) as e:
        list_images([str(tmp_path / spec)])
    assert str(e.value).startswith(f"--input {tmp_path / spec}: {message}")
