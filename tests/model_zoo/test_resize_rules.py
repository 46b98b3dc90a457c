"""The upstream test-time resize (rules mmdet_resize and mmseg_resize): each zoo entry's test
resize against mmcv's own ``imrescale`` and ``rescale_size``, on real photos (enlarged and
shrunk) and on image sizes of every aspect ratio."""

import cv2
import numpy as np
import pytest
from mmcv.image import imrescale, imresize, rescale_size

import detectron2.data.transforms as T
from detectron2.config import instantiate

import gcnet.model_zoo as zoo
from gcnet.data import OpenCVResizeShortestEdge
from gcnet.engine import predictor
from gcnet.model_zoo.manifest import default_manifest

MANIFEST = default_manifest()
PHOTOS = [
    "demo/park_bench.jpg",  # 640x427: enlarged
    "tiny_coco/val2017/000000006818.jpg",  # 427x640, portrait
    "tiny_coco/val2017/000000037777.jpg",  # 352x230
    "balloon/val/14898532020_ba6199dd22_k.jpg",  # 2048x1365: shrunk
    "camvid/val/0016E5_07959.png",  # 480x360
]


def upstream_scale(name: str):
    """The (longer, shorter) scale of the upstream test pipeline (``img_scale`` / ``scale``) of a
    zoo entry, from its upstream config."""
    if not name.startswith("mmseg/"):
        return (1333, 800)
    if "cityscapes" in name:
        return (2049, 1025) if "769x769" in name else (2048, 1024)
    return (2048, 512)  # ADE20K, VOC


RESIZED = sorted(n for n, m in MANIFEST.models.items() if {"mmdet_resize", "mmseg_resize"} & set(m.test_rules))


def test_every_entry_with_a_resize_rule():
    assert len(RESIZED) == len(MANIFEST.models) == 56


@pytest.mark.parametrize("name", RESIZED)
def test_each_entry_resizes_as_upstream(name, shared_data):
    image = cv2.imread(str(shared_data / PHOTOS[0]))
    (resize,) = instantiate(zoo.get_config(name).dataloader.test.mapper.augmentations)
    resized = resize.get_transform(image).apply_image(image)
    assert np.array_equal(resized, imrescale(image, upstream_scale(name)))


@pytest.mark.parametrize("scale", [(1333, 800), (2049, 1025), (2048, 512)])
def test_photos_resized_as_mmcv(scale, shared_data):
    """Pixel for pixel and the same factor, where detectron2's resize (PIL) differs."""
    resize = OpenCVResizeShortestEdge(short_edge_length=scale[1], max_size=scale[0])
    for photo in PHOTOS:
        image = cv2.imread(str(shared_data / photo))
        transform = resize.get_transform(image)
        expected = imrescale(image, scale)
        assert np.array_equal(transform.apply_image(image), expected), photo
        detectron2 = T.ResizeShortestEdge(scale[1], scale[0]).get_transform(image)
        if (detectron2.new_h, detectron2.new_w) == expected.shape[:2]:
            assert np.abs(detectron2.apply_image(image).astype(int) - expected).max() >= 1, photo


def test_shrinking_differs_most_from_pil(shared_data):
    image = cv2.imread(str(shared_data / PHOTOS[0]))
    ours = OpenCVResizeShortestEdge(384, 10000).get_transform(image).apply_image(image)
    pil = T.ResizeShortestEdge(384, 10000).get_transform(image).apply_image(image)
    assert np.array_equal(ours, imrescale(image, (10000, 384)))
    assert np.abs(ours.astype(int) - pil).max() == 38


def test_sizes_rounded_as_mmcv():
    """Every aspect ratio, from 1 to 5000 pixels: mmcv's rescale_size; detectron2's rounding
    gives 262 sizes from 16 to 1024 pixels one pixel shorter."""
    rng = np.random.default_rng(0)
    sizes = [(1, 1), (1, 5000), (5000, 1), (3, 7), (799, 1334), (800, 1333), (1333, 800), (2, 3000)]
    sizes += [tuple(int(v) for v in rng.integers(1, 5000, 2)) for _ in range(3000)]
    for h, w in sizes:
        for scale in [(1333, 800), (2049, 1025), (2048, 512)]:
            expected = rescale_size((w, h), scale)[::-1]
            assert OpenCVResizeShortestEdge.get_output_shape(h, w, scale[1], scale[0]) == expected, (h, w, scale)
    detectron2, ours = T.ResizeShortestEdge.get_output_shape, OpenCVResizeShortestEdge.get_output_shape
    differ = [
        (h, w) for h in range(16, 1025) for w in range(16, 1025) if detectron2(h, w, 800, 1333) != ours(h, w, 800, 1333)
    ]
    assert len(differ) == 262 and all(max(h, w) / min(h, w) > 1333 / 800 for h, w in differ)


def test_label_maps_resized_by_nearest_neighbour(shared_data):
    label = cv2.imread(str(shared_data / "camvid/valannot/0016E5_07959.png"), cv2.IMREAD_UNCHANGED)
    transform = OpenCVResizeShortestEdge(512, 2048).get_transform(label)
    assert np.array_equal(transform.apply_segmentation(label), imresize(label, (683, 512), interpolation="nearest"))
    wide = label.astype(np.int64)
    assert np.array_equal(transform.apply_segmentation(wide), transform.apply_segmentation(label).astype(np.int64))


def test_predictor_resizes_as_the_test_loader(shared_data):
    """The Predictor's preprocessing of a zoo config: mmcv's imrescale of the RGB image."""
    image = cv2.imread(str(shared_data / PHOTOS[3]))
    inputs = predictor.TestPreprocessor(zoo.get_config("gcnet-v1/mask_rcnn_r16_gcb_c3-c5_r50_fpn_1x"))(image)
    expected = imrescale(image, (1333, 800))[:, :, ::-1].transpose(2, 0, 1)
    assert np.array_equal(inputs["image"].numpy(), expected.astype(np.float32))
    assert (inputs["height"], inputs["width"]) == image.shape[:2]


def test_a_resize_rescaled_as_mmsegmentation_scales():
    """MultiScaleFlipAug's scales: each side of the test scale times the ratio, truncated."""
    resize = OpenCVResizeShortestEdge(1025, 2049)
    for ratio in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75):
        rescaled = resize.rescaled(ratio)
        assert (rescaled.max_size, rescaled.short_edge_length[0]) == (int(2049 * ratio), int(1025 * ratio))
    with pytest.raises(ValueError, match=r"only a resize to one scale can be rescaled, not to \(640, 800\)"):
        OpenCVResizeShortestEdge((640, 800), 1333, sample_style="choice").rescaled(0.5)
