"""A photo through a zoo entry's config from its file to the final detections or label map, with
seeded random weights, against upstream's path built from mmcv's ``imread``, ``imrescale``,
``imnormalize`` and ``imresize`` and the published formulas (``upstream_reference``) around the
model's own network modules (whose conversion ``test_converters.py`` proves): for an mmdetection
v2 entry, a cascade entry, an mmdetection v1 (original GCNet) entry and an mmsegmentation entry
with multi-scale + flip testing.

The test scale is smaller than upstream's (the rules are the same at every scale), and the RPN
and the detections keep fewer boxes, to keep the forward passes short on a CPU.
"""

import re

import pytest
import torch
from mmcv.image import imnormalize, imread, imrescale

from detectron2.config import instantiate

import gcnet.model_zoo as zoo
from gcnet.engine.predictor import Predictor

from . import upstream_reference as upstream
from .upstream_layouts import randomize_batchnorm_

PHOTO = "demo/park_bench.jpg"
SCALE = (192, 112)  # (longer, shorter) test scale: the 640x427 photo becomes 168x112
SEGMENTATION_SCALE = (72, 48)  # its 6 ratios make images of 36x24 to 126x84
PROPOSALS, DETECTIONS = 120, 8
STRIDES, RATIOS = (4, 8, 16, 32, 64), (0.5, 1.0, 2.0)
# The parameters random_detector spreads: the RPN head, the box and mask predictors.
SPREAD = re.compile(r"rpn_head|cls_score|bbox_pred|mask_head(\.\d)?\.predictor")
CASCADE_STDS = [(0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)]


def small_test_config(name: str):
    cfg = zoo.get_config(name)
    cfg.dataloader.test.mapper.augmentations[0].update(short_edge_length=SCALE[1], max_size=SCALE[0])
    cfg.model.proposal_generator.post_nms_topk = (2000, PROPOSALS)
    predictors = cfg.model.roi_heads.get("box_predictors") or [cfg.model.roi_heads.box_predictor]
    for predictor in predictors:
        predictor.test_topk_per_image = DETECTIONS
    if name.startswith("gcnet-v1/"):
        cfg.model.test_scale = SCALE
    return cfg


def random_detector(cfg, seed: int, photo):
    """The model of ``cfg`` with seeded random weights, its FPN outputs scaled to unit spread on
    the photo and its RPN, box and mask predictors spread, so that proposals and detections are
    many, their scores distinct and their masks mostly far from the threshold."""
    torch.manual_seed(seed)
    model = randomize_batchnorm_(instantiate(cfg.model)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if SPREAD.search(name):
                p.copy_(torch.randn(p.shape, generator=g) * (0.1 if "cls_score" in name or "mask" in name else 0.02))
        features = model.backbone(model.preprocess_image([mapped_photo(cfg, photo)]).tensor)
        for level in range(2, 6):
            conv = getattr(model.backbone, f"fpn_output{level}")
            spread = float(features[f"p{level}"].std())
            conv.weight /= spread
            conv.bias /= spread
    return model


def mapped_photo(cfg, photo):
    """The test loader's mapping of the photo's file."""
    dataset_dict = {"file_name": str(photo), "height": 427, "width": 640, "image_id": 0}
    return instantiate(cfg.dataloader.test.mapper)(dataset_dict)


def gcnet_detections(cfg, model, photo):
    """The test loader's mapper on the photo's file, then the model (with its post-processing)."""
    with torch.no_grad():
        return model([mapped_photo(cfg, photo)])[0]["instances"]


def upstream_features(model, image: torch.Tensor):
    features = model.backbone(upstream.pad_to_multiple(image))
    return [features[f"p{level}"] for level in range(2, 7)]


def upstream_proposals(model, features, image_size, version: str):
    """mmdetection's RPN test on the model's RPN head (detectron2's layout: objectness (N, A, H, W),
    deltas (N, A * 4, H, W), flattened to (H, W, A) order as mmdetection does)."""
    logits, deltas = model.proposal_generator.rpn_head(features)
    anchors = [
        upstream.grid_anchors(upstream.base_anchors(stride, 8.0, RATIOS, version), f.shape[-2:], stride)
        for stride, f in zip(STRIDES, features)
    ]
    logits = [x[0].permute(1, 2, 0).reshape(-1) for x in logits]
    deltas = [x[0].reshape(3, 4, *x.shape[-2:]).permute(2, 3, 0, 1).reshape(-1, 4) for x in deltas]
    return upstream.rpn_proposals(logits, deltas, anchors, image_size, 1000, PROPOSALS, version)


def upstream_masks(heads, features, boxes, labels, samples: int, version: str):
    """Each mask head's sigmoid of its class channel, averaged over the heads (cascade)."""
    pooled = upstream.pool_rois(features[:4], boxes, 14, samples, version)
    rows = torch.arange(len(boxes))
    return sum(head.layers(pooled)[rows, labels].sigmoid() for head in heads) / len(heads)


def upstream_v2(model, photo, cascade: bool):
    """mmdetection v2's ``simple_test`` (``rescale=True``): Resize(keep_ratio), Normalize, Pad,
    the RPN, (Cascade)RoIHead's boxes (NMS after the rescale) and masks, pasted at the original
    size."""
    original = imread(str(photo))
    resized = imrescale(original, SCALE)
    size = resized.shape[:2]
    factors = torch.tensor([size[1] / 640, size[0] / 427] * 2, dtype=torch.float32)
    features = upstream_features(model, upstream.normalize_v2(resized))
    rois, heads = upstream_proposals(model, features, size, "v2"), model.roi_heads
    stages = list(zip(heads.box_head, heads.box_predictor)) if cascade else [(heads.box_head, heads.box_predictor)]
    stage_logits = []
    for k, (box_head, predictor) in enumerate(stages):
        logits, deltas = predictor(box_head(upstream.pool_rois(features[:4], rois, 7, 0, "v2")))
        stage_logits.append(logits)
        stds = CASCADE_STDS[k] if cascade else (0.1, 0.1, 0.2, 0.2)
        boxes = upstream.delta2bbox(rois, deltas, stds, size)
        rois = boxes if cascade and k < 2 else rois
    scores = (sum(stage_logits) / len(stage_logits)).softmax(1)
    boxes = boxes / factors.repeat(boxes.shape[1] // 4)
    boxes, scores, labels = upstream.multiclass_nms(boxes, scores, 0.05, 0.5, DETECTIONS)
    mask_heads = heads.mask_head if cascade else [heads.mask_head]
    probabilities = upstream_masks(mask_heads, features, boxes * factors, labels, 0, "v2")
    pasted = upstream.paste_masks_v2(probabilities, boxes * factors / factors, (427, 640))
    return boxes, scores, labels, pasted >= 0.5, pasted


def upstream_v1(model, photo):
    """The original GCNet code's ``simple_test``: ImageTransform (imrescale, v1's normalisation,
    pad), the RPN, the RoI head in the pixel convention (NMS in the original image), masks
    resized to their whole-pixel boxes; boxes as v1 writes them to COCO (x2 - x1 + 1 wide)."""
    original = imread(str(photo))
    resized, scale = imrescale(original, SCALE, return_scale=True)
    size = resized.shape[:2]
    features = upstream_features(model, upstream.normalize_v1(resized))
    rois, heads = upstream_proposals(model, features, size, "v1"), model.roi_heads
    logits, deltas = heads.box_predictor(heads.box_head(upstream.pool_rois(features[:4], rois, 7, 2, "v1")))
    boxes = upstream.delta2bbox(rois, deltas, (0.1, 0.1, 0.2, 0.2), size, pixel=True) / scale
    boxes, scores, labels = upstream.multiclass_nms(boxes, logits.softmax(1), 0.05, 0.5, DETECTIONS, pixel=True)
    probabilities = upstream_masks([heads.mask_head], features, boxes * scale, labels, 2, "v1")
    pasted = upstream.paste_masks_v1(probabilities, boxes * scale / scale, (427, 640))
    return boxes + torch.tensor([0.0, 0.0, 1.0, 1.0]), scores, labels, pasted > 0.5, pasted


def assert_same_detections(instances, expected):
    """Boxes within 1e-3 pixels, scores within 1e-5, the same classes, by score; the same mask
    pixels wherever upstream's pasted probability is not within 1e-4 of the threshold 0.5 (there,
    one float32 rounding, such as that of mmcv's normalisation, can tip a pixel)."""
    boxes, scores, labels, masks, probabilities = expected
    order = torch.argsort(instances.scores, descending=True)
    assert len(instances) == len(scores) == DETECTIONS
    torch.testing.assert_close(instances.pred_boxes.tensor[order], boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(instances.scores[order], scores, atol=1e-5, rtol=0)
    assert torch.equal(instances.pred_classes[order], labels)
    decided = (probabilities - 0.5).abs() > 1e-4
    assert torch.equal(instances.pred_masks[order][decided], masks[decided]) and masks.any()
    assert (~decided).sum() < 1e-4 * decided.numel()


@pytest.mark.parametrize(
    "name,cascade",
    [
        ("mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco", False),
        ("mmdet/cascade_mask_rcnn_x101_32x4d_fpn_syncbn-backbone_r16_gcb_c3-c5_1x_coco", True),
    ],
)
def test_mmdetection_v2_entries_on_a_photo(name, cascade, shared_data):
    cfg = small_test_config(name)
    model = random_detector(cfg, 1, shared_data / PHOTO)
    with torch.no_grad():
        expected = upstream_v2(model, shared_data / PHOTO, cascade)
    assert_same_detections(gcnet_detections(cfg, model, shared_data / PHOTO), expected)


def test_mmdetection_v1_entry_on_a_photo(shared_data):
    """Also through the Predictor, which reads and resizes the photo as the test loader."""
    cfg = small_test_config("gcnet-v1/mask_rcnn_r16_gcb_c3-c5_r50_fpn_1x")
    model = random_detector(cfg, 2, shared_data / PHOTO)
    with torch.no_grad():
        expected = upstream_v1(model, shared_data / PHOTO)
    assert_same_detections(gcnet_detections(cfg, model, shared_data / PHOTO), expected)
    cfg.train.init_checkpoint = ""
    predictor = Predictor(cfg, device="cpu")
    predictor.model = model
    assert_same_detections(predictor(imread(str(shared_data / PHOTO)))["instances"], expected)


def upstream_mmseg_probabilities(model, photo, ratios):
    """mmsegmentation v0.x ``aug_test``: per MultiScaleFlipAug scale and flip, imrescale of the
    original image, flip, Normalize; the logits resized to the input, then to the original size,
    softmax, flipped back; the mean."""
    original, align_corners = imread(str(photo)), model.sem_seg_head.align_corners
    total = 0
    for scale in upstream.mmseg_test_scales(SEGMENTATION_SCALE, ratios):
        for flip in (False, True):
            image = imrescale(original, scale)
            image = image[:, ::-1] if flip else image
            x = torch.from_numpy(imnormalize(image, upstream.MEAN, upstream.STD, to_rgb=True).transpose(2, 0, 1).copy())
            logits = model.sem_seg_head.layers(model.backbone(x[None]))
            logits = torch.nn.functional.interpolate(logits, x.shape[-2:], mode="bilinear", align_corners=align_corners)
            logits = torch.nn.functional.interpolate(logits, (427, 640), mode="bilinear", align_corners=align_corners)
            probabilities = logits.softmax(1)
            total = total + (probabilities.flip(-1) if flip else probabilities)
    return total[0] / (2 * len(ratios))


def test_mmsegmentation_entry_ms_flip_on_a_photo(shared_data):
    cfg = zoo.get_config("mmseg/gcnet_r50-d8_512x512_20k_voc12aug", metric="mIoU (ms+flip)")
    longer, shorter = SEGMENTATION_SCALE
    cfg.dataloader.test.mapper.augmentations[0].update(short_edge_length=shorter, max_size=longer)
    torch.manual_seed(3)
    model = randomize_batchnorm_(instantiate(cfg.model)).eval()
    with torch.no_grad():  # class probabilities neither flat nor saturated, nor one class everywhere
        weight = model.sem_seg_head.predictor.weight
        weight.normal_(std=3e-3, generator=torch.Generator().manual_seed(4))
        weight -= weight.mean(dim=1, keepdim=True)
    mapper = instantiate(cfg.dataloader.test.mapper)
    inputs = mapper({"file_name": str(shared_data / PHOTO), "height": 427, "width": 640})
    with torch.no_grad():
        probabilities = model([inputs])[0]["sem_seg"]
        expected = upstream_mmseg_probabilities(model, shared_data / PHOTO, cfg.dataloader.test.mapper.test_ratios)
    torch.testing.assert_close(probabilities, expected, atol=1e-5, rtol=0)
    top2 = expected.topk(2, dim=0).values
    decided = top2[0] - top2[1] > 1e-5  # pixels where two classes do not tie
    labels, expected_labels = probabilities.argmax(0), expected.argmax(0)
    assert torch.equal(labels[decided], expected_labels[decided]) and decided.float().mean() > 0.99
    assert len(torch.unique(expected_labels)) >= 5 and 0.1 < expected.max() < 0.99
