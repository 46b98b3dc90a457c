"""mmsegmentation's multi-scale + flip test (rule mmseg_tta_scales): the ms+flip config of
every mmseg entry, its test images rescaled from the original by mmcv's ``imrescale`` at
``MultiScaleFlipAug``'s scales, and the model's average over them."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmcv.image import imrescale

from detectron2.config import instantiate

import gcnet.model_zoo as zoo
from gcnet.data import SemSegDatasetMapper
from gcnet.model_zoo.manifest import default_manifest
from gcnet.modeling import ContextHead, ContextSegmentor, build_gcnet_resnet

from . import upstream_reference as upstream
from .test_resize_rules import upstream_scale

MANIFEST = default_manifest()
MMSEG_ENTRIES = sorted(n for n in MANIFEST.models if n.startswith("mmseg/"))
RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]  # mmsegmentation's aug_test ratios
MS_FLIP = "mIoU (ms+flip)"


@pytest.mark.parametrize("name", MMSEG_ENTRIES)
def test_every_ms_flip_figure_has_its_config(name):
    assert "mmseg_tta_scales" in MANIFEST.model(name).test_rules
    cfg = zoo.get_config(name, metric=MS_FLIP)
    assert list(cfg.dataloader.test.mapper.test_ratios) == RATIOS
    assert cfg.model.inference.flip is True and list(cfg.model.inference.scales) == [1.0]
    single = zoo.get_config(name)
    assert single.dataloader.test.mapper.test_ratios is None and single.model.inference.flip is False
    with pytest.raises(ValueError, match=rf"{name} has no metric 'mIoU \(ms\)'; its metrics: mIoU, mIoU \(ms\+flip\)"):
        zoo.get_config(name, metric="mIoU (ms)")


@pytest.mark.parametrize(
    "name",
    [
        "mmseg/gcnet_r50-d8_769x769_40k_cityscapes",
        "mmseg/gcnet_r50-d8_512x1024_40k_cityscapes",
        "mmseg/gcnet_r50-d8_512x512_80k_ade20k",
    ],
)
def test_test_images_rescaled_from_the_original(name, shared_data):
    """Each ratio's image is mmcv's imrescale of the original image to the scale
    (int(longer * ratio), int(shorter * ratio)), as MultiScaleFlipAug (v0.x) makes it."""
    photo = shared_data / "demo/park_bench.jpg"
    mapper = instantiate(zoo.get_config(name, metric=MS_FLIP).dataloader.test.mapper)
    mapped = mapper({"file_name": str(photo), "height": 427, "width": 640})
    original = cv2.imread(str(photo))
    scales = upstream.mmseg_test_scales(upstream_scale(name), RATIOS)
    assert len(mapped["multi_scale_images"]) == len(scales) == 6
    for image, scale in zip(mapped["multi_scale_images"], scales):
        expected = imrescale(original, scale)[:, :, ::-1].transpose(2, 0, 1)
        assert np.array_equal(image.numpy(), expected), scale
    single_scale = imrescale(original, upstream_scale(name))[:, :, ::-1].transpose(2, 0, 1)
    assert np.array_equal(mapped["image"].numpy(), single_scale)


def test_test_ratios_need_a_resize_that_rescales():
    with pytest.raises(ValueError, match=r"test_ratios rescale the test resize: the augmentations must hold one"):
        SemSegDatasetMapper(is_train=False, augmentations=[], test_ratios=[0.5, 1.0])


@pytest.fixture(scope="module")
def segmentor():
    torch.manual_seed(0)
    backbone = build_gcnet_resnet(18, norm="BN", out_features=["res4", "res5"])
    head = ContextHead(in_feature="res5", in_channels=512, num_classes=5, channels=16, norm="BN")
    inference = dict(mode="whole", scales=[1.0], flip=True, output_resize="logits")
    normalization = dict(pixel_mean=[100.0] * 3, pixel_std=[50.0] * 3)
    return ContextSegmentor(backbone=backbone, sem_seg_head=head, inference=inference, **normalization).eval()


def test_prediction_averages_the_given_images(segmentor):
    """mmsegmentation's aug_test: per image and flip, the logits resized to the input, then to
    the original size, the softmax, flipped back; the mean."""
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), generator=g).float() for h, w in [(24, 36), (37, 53), (50, 72)]]
    with torch.no_grad():
        (output,) = segmentor([{"image": images[1], "height": 43, "width": 61, "multi_scale_images": images}])
        expected = 0
        for image in images:
            for flip in (False, True):
                x = segmentor.normalize(image)[None]
                x = x.flip(-1) if flip else x
                logits = segmentor.sem_seg_head.layers(segmentor.backbone(x))
                logits = F.interpolate(logits, x.shape[-2:], mode="bilinear")
                probabilities = F.interpolate(logits, (43, 61), mode="bilinear").softmax(1)
                expected = expected + (probabilities.flip(-1) if flip else probabilities)
    torch.testing.assert_close(output["sem_seg"], expected[0] / 6)
    with torch.no_grad():
        (resized_in_model,) = segmentor([{"image": images[1], "height": 43, "width": 61}])
    assert (resized_in_model["sem_seg"] - output["sem_seg"]).abs().max() > 0.01


def test_images_per_scale_and_scales_in_the_model_are_not_mixed(segmentor):
    segmentor.scales = (0.5, 1.0)
    try:
        with pytest.raises(ValueError, match=r"the input holds images for its own test scales; inference.scales must"):
            segmentor([{"image": torch.zeros(3, 8, 8), "multi_scale_images": [torch.zeros(3, 8, 8)]}])
    finally:
        segmentor.scales = (1.0,)
