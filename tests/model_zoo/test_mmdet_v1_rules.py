"""The test-time box convention of mmdetection v1 (the original GCNet code), which the zoo's
gcnet-v1 entries follow: each piece of a v1 zoo config against the v1 formula
(``upstream_reference``), on tiny, huge and border boxes, and detectron2's rule beside it."""

import numpy as np
import pytest
import torch
import torchvision

from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances

import gcnet.model_zoo as zoo
from gcnet.modeling.mmdet import SCALE_FACTOR_FIELD, clip_boxes, pixel_nms

from . import upstream_reference as upstream

V1 = "gcnet-v1/mask_rcnn_r16_gcb_c3-c5_r50_fpn_1x"
V2 = "mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco"
IMAGE_SIZE = (96, 160)  # (height, width) of the test images
FEATURE_SIZES = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]


@pytest.fixture(scope="module")
def v1_config():
    return zoo.get_config(V1)


def random_boxes(n: int, seed: int, max_size: float = 300.0) -> torch.Tensor:
    """Boxes of every size from under a pixel to ``max_size``, some across the image border."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([IMAGE_SIZE[1] + 20.0, IMAGE_SIZE[0] + 20.0]) - 10
    wh = torch.rand(n, 2, generator=g) ** 3 * max_size
    return torch.cat([xy, xy + wh], dim=1)


def test_anchors_are_v1s_and_not_detectron2s(v1_config):
    """Base size the stride, centre ((stride - 1) / 2, (stride - 1) / 2), rounded corners."""
    features = [torch.zeros(1, 1, *size) for size in FEATURE_SIZES]
    anchors = instantiate(v1_config.model.proposal_generator.anchor_generator)(features)
    for level, (size, stride) in enumerate(zip(FEATURE_SIZES, (4, 8, 16, 32, 64))):
        expected = upstream.grid_anchors(upstream.base_anchors(stride, 8.0, (0.5, 1.0, 2.0), "v1"), size, stride)
        assert torch.equal(anchors[level].tensor, expected), level
    detectron2 = instantiate(zoo.get_config(V2).model.proposal_generator.anchor_generator)(features)
    v2 = upstream.grid_anchors(upstream.base_anchors(4, 8.0, (0.5, 1.0, 2.0), "v2"), FEATURE_SIZES[0], 4)
    torch.testing.assert_close(detectron2[0].tensor, v2)  # mmdetection v2's anchors are detectron2's
    assert round(float((detectron2[0].tensor - anchors[0].tensor).abs().max()), 4) == 2.3137


def extreme_deltas(n: int, seed: int) -> torch.Tensor:
    """Deltas with log size ratios beyond +-log(1000/16) (after the stds) in both directions."""
    g = torch.Generator().manual_seed(seed)
    deltas = torch.randn(n, 4, generator=g)
    deltas[: n // 4, 2:] = -40.0
    deltas[n // 4 : n // 2, 2:] = 40.0
    return deltas


def test_box_decoding_counts_pixels_and_clamps_both_sides(v1_config):
    rois = random_boxes(200, seed=1)
    rois[:, 2:] = torch.maximum(rois[:, 2:], rois[:, :2])
    deltas = extreme_deltas(200, seed=2)
    for transform, stds in [
        (v1_config.model.proposal_generator.box2box_transform, (1.0, 1.0, 1.0, 1.0)),
        (v1_config.model.roi_heads.box_predictor.box2box_transform, (0.1, 0.1, 0.2, 0.2)),
    ]:
        transform = instantiate(transform)
        decoded = clip_boxes(transform.apply_deltas(deltas, rois), IMAGE_SIZE, offset=1.0)
        torch.testing.assert_close(decoded, upstream.delta2bbox(rois, deltas, stds, IMAGE_SIZE, pixel=True))
        moderate = rois[100:]  # get_deltas (training) inverts apply_deltas in the pixel convention
        targets = transform.apply_deltas(deltas[100:], moderate)
        torch.testing.assert_close(transform.apply_deltas(transform.get_deltas(moderate, targets), moderate), targets)
    continuous = upstream.delta2bbox(rois, deltas, (1.0, 1.0, 1.0, 1.0), IMAGE_SIZE, pixel=False)
    assert (continuous - upstream.delta2bbox(rois, deltas, (1.0,) * 4, IMAGE_SIZE, pixel=True)).abs().max() >= 0.5


def test_nms_counts_pixels():
    """IoU with areas (x2 - x1 + 1)(y2 - y1 + 1): pairs of boxes of 1 to 6 pixels, shifted by
    1 to 3, overlap more than continuously."""
    g = torch.Generator().manual_seed(3)
    first = torch.rand(200, 2, generator=g) * 1000
    first = torch.cat([first, first + torch.randint(1, 7, (200, 2), generator=g)], dim=1)
    second = first + torch.randint(1, 4, (200, 1), generator=g) * torch.tensor([1.0, 0.0, 1.0, 0.0])
    boxes, scores = torch.cat([first, second]), torch.rand(400, generator=g)
    kept = pixel_nms(boxes, scores, 0.5)
    assert kept.tolist() == upstream.greedy_nms(boxes, scores, 0.5, pixel=True)
    assert len(kept) < len(torchvision.ops.nms(boxes, scores, 0.5)) - 10


def test_roi_pooling_ends_after_the_last_pixel(v1_config):
    """Level from the pixel area, box end (x2 + 1) * scale, RoIs under a feature pixel not
    widened; boxes of 0 to 300 pixels, some on the border, some at a level boundary."""
    g = torch.Generator().manual_seed(5)
    features = [torch.randn(1, 16, *size, generator=g) for size in FEATURE_SIZES[:4]]
    rois = random_boxes(120, seed=6)
    rois[:, 2:] = torch.maximum(rois[:, 2:], rois[:, :2])
    rois[:10, 2:] = rois[:10, :2] + 111.0  # sqrt((w + 1) * (h + 1)) = 112: level 1 in v1, 0 continuously
    for pooler, size in [(v1_config.model.roi_heads.box_pooler, 7), (v1_config.model.roi_heads.mask_pooler, 14)]:
        pooled = instantiate(pooler)(features, [Boxes(rois)])
        expected = upstream.pool_rois(features, rois, size, 2, "v1")
        torch.testing.assert_close(pooled, expected, atol=2e-5, rtol=0)
    detectron2 = instantiate(zoo.get_config(V2).model.roi_heads.box_pooler)(features, [Boxes(rois)])
    differs = (detectron2 - upstream.pool_rois(features, rois, 7, 2, "v1")).abs().amax(dim=(1, 2, 3)) > 0.01
    assert differs.float().mean() > 0.8


def test_proposals_are_v1s(v1_config):
    """Per level the 1000 best, decoded in pixels, clipped to the last pixel (boxes without area
    kept), NMS at 0.7 with pixel areas; the 1000 best of all levels."""
    rpn = instantiate(v1_config.model.proposal_generator).eval()
    features = [torch.zeros(1, 1, *size) for size in FEATURE_SIZES]
    anchors = rpn.anchor_generator(features)
    g = torch.Generator().manual_seed(7)
    logits = [torch.randn(1, len(a), generator=g) * 3 for a in anchors]
    deltas = [torch.randn(1, len(a), 4, generator=g) for a in anchors]
    deltas[0][0, :200, 0] = 30.0  # moved beyond the right border: one pixel wide at x = 159 in v1
    (proposals,) = rpn.predict_proposals(anchors, logits, deltas, [IMAGE_SIZE])
    expected = upstream.rpn_proposals(
        [x[0] for x in logits], [x[0] for x in deltas], [a.tensor for a in anchors], IMAGE_SIZE, 1000, 1000, "v1"
    )
    torch.testing.assert_close(proposals.proposal_boxes.tensor, expected, atol=1e-4, rtol=0)
    assert (expected[:, 0] == expected[:, 2]).sum() > 5  # boxes of one pixel column


def test_detections_run_nms_in_the_original_image(v1_config):
    """Scores above 0.05, boxes divided by the resize factor, per-class NMS with pixel areas in
    the original image, the 100 best; the boxes stay at the input scale for the masks."""
    predictor = instantiate(v1_config.model.roi_heads.box_predictor).eval()
    g = torch.Generator().manual_seed(8)
    first = torch.rand(150, 2, generator=g) * torch.tensor([150.0, 85.0])
    first = torch.cat([first, first + torch.randint(2, 8, (150, 2), generator=g)], dim=1)
    rois = torch.cat([first, first + torch.randint(1, 3, (150, 1), generator=g) * torch.tensor([1.0, 0, 1, 0])])
    logits = (torch.randn(150, 81, generator=g) * 3).repeat(2, 1)  # the boxes of a pair score alike
    logits += torch.randn(300, 81, generator=g) * 0.01  # but not equally
    deltas = torch.randn(300, 320, generator=g) * 0.1
    proposals = Instances(IMAGE_SIZE, proposal_boxes=Boxes(rois))
    scale = 0.3746  # a test image 2.67 times smaller than the original
    proposals.set(SCALE_FACTOR_FIELD, torch.full((300, 4), scale))
    (detections,), _ = predictor.inference((logits, deltas), [proposals])
    boxes = upstream.delta2bbox(rois, deltas, (0.1, 0.1, 0.2, 0.2), IMAGE_SIZE, pixel=True) / scale
    expected = upstream.multiclass_nms(boxes, logits.softmax(1), 0.05, 0.5, 100, pixel=True)
    assert len(detections) == 100
    torch.testing.assert_close(detections.pred_boxes.tensor / scale, expected[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(detections.scores, expected[1])
    assert torch.equal(detections.pred_classes, expected[2])
    proposals.remove(SCALE_FACTOR_FIELD)  # NMS in the test image instead: other detections
    (at_input_scale,), _ = predictor.inference((logits, deltas), [proposals])
    assert set(at_input_scale.scores.tolist()) != set(detections.scores.tolist())


@pytest.fixture(scope="module")
def v1_model(v1_config):
    return instantiate(v1_config.model).eval()


def test_masks_pasted_in_whole_pixels_and_boxes_returned_continuous(v1_model):
    """Each 28x28 mask resized by OpenCV (mmcv.imresize) to its box truncated to pixels, kept
    above 0.5; masks of one pixel, boxes on the border, a box narrower than a pixel."""
    original, scale = (427, 640), min(1333 / 640, 800 / 427)
    test = (int(427 * scale + 0.5), int(640 * scale + 0.5))
    g = torch.Generator().manual_seed(10)
    boxes = torch.cat([random_boxes(40, seed=11, max_size=400.0) * 5, torch.tensor([[3.0, 4.0, 3.0, 4.0]])])
    boxes = clip_boxes(torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2])], 1), test, offset=1.0)
    boxes[-2] = torch.tensor([7.6, 9.0, 7.2, 30.0])  # x2 < x1: one pixel wide
    instances = Instances(test, pred_boxes=Boxes(boxes), scores=torch.rand(41, generator=g))
    instances.pred_masks = torch.rand(41, 1, 28, 28, generator=g)
    instances.pred_masks[-2:] = 0.9
    result = v1_model.postprocess(instances, {"height": original[0], "width": original[1]})
    expected_boxes = boxes / scale
    masks = upstream.paste_masks_v1(instances.pred_masks[:, 0], expected_boxes, original) > 0.5
    assert torch.equal(result.pred_masks, masks) and masks[-1].sum() == 1 and masks[-2].any(0).sum() == 1
    torch.testing.assert_close(result.pred_boxes.tensor, expected_boxes + torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert result.image_size == original


def test_one_resize_factor_for_both_axes(v1_model):
    """v1 divides by min(1333 / longer, 800 / shorter); an input resized otherwise (or a
    smaller output size) gets each axis's factor."""
    scale = min(1333 / 640, 800 / 427)
    factors = v1_model.scale_factors({"height": 427, "width": 640}, (800, 1199))
    assert factors.tolist() == pytest.approx([scale] * 4, rel=1e-7)
    assert 1199 / 640 != pytest.approx(scale, rel=1e-5)  # each axis's factor differs
    other = v1_model.scale_factors({"height": 214, "width": 320}, (800, 1199))
    assert other.tolist() == pytest.approx([1199 / 320, 800 / 214] * 2)
    assert np.array_equal(v1_model.test_scale, (1333, 800))
