"""The upstream test-time rules the zoo reproduces, each checked against an explicit
re-computation of the upstream rule on the same stage outputs: mmdetection's cascade scores and
box coders with their two-sided clamp (all three mmdetection versions), and mmsegmentation's
resize of the logits."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from detectron2.config import instantiate
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances

import gcnet.model_zoo as zoo
from gcnet.model_zoo.manifest import default_manifest
from gcnet.modeling import ContextHead, ContextSegmentor, build_gcnet_resnet

from . import upstream_reference as upstream
from .upstream_layouts import randomize_batchnorm_

MANIFEST = default_manifest()
CASCADE_ENTRIES = sorted(n for n in MANIFEST.models if "cascade_mask_rcnn" in n)
# target_stds of the three cascade stages in mmdetection v1-v3 and the original GCNet configs.
UPSTREAM_CASCADE_STDS = [(0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)]
IMAGE_SIZE = (256, 320)


def mmdet_multiclass_nms(boxes, scores, score_thr=0.05, iou_thr=0.5, max_num=100):
    """mmdetection's ``multiclass_nms`` for class-agnostic boxes (background last)."""
    keep_rows, labels = (scores[:, :-1] > score_thr).nonzero(as_tuple=True)
    boxes, scores = boxes[keep_rows], scores[keep_rows, labels]
    keep = torchvision.ops.batched_nms(boxes, scores, labels, iou_thr)[:max_num]
    return boxes[keep], scores[keep], labels[keep]


def random_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    height, width = IMAGE_SIZE
    features = {f"p{k}": torch.randn(1, 256, height // 2**k, width // 2**k, generator=g) for k in range(2, 7)}
    xy = torch.rand(80, 2, generator=g, dtype=torch.float64) * torch.tensor([width * 0.8, height * 0.8])
    wh = torch.rand(80, 2, generator=g, dtype=torch.float64) * 100 + 16
    proposals = Instances(IMAGE_SIZE)
    proposals.proposal_boxes = Boxes(torch.cat([xy, xy + wh], dim=1).float())
    proposals.objectness_logits = torch.zeros(80)
    return features, proposals


def zoo_cascade_box_heads():
    """The box heads of a zoo cascade model with the zoo's overrides, random weights."""
    cfg = zoo.get_config("mmdet/cascade_mask_rcnn_x101_32x4d_fpn_syncbn-backbone_1x_coco")
    heads = instantiate(cfg.model.roi_heads)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in heads.named_parameters():  # spread logits and deltas so that rules show
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if "cls_score" in name or "bbox_pred" in name else 0.02))
    return heads.eval()


@pytest.fixture(scope="module")
def cascade_heads():
    return zoo_cascade_box_heads()


def run_recording_stages(heads, features, proposals):
    """The detections of ``heads``, the boxes each stage pooled, and each stage's (logits, deltas)."""
    pooled, outputs = [], []
    hooks = [heads.box_pooler.register_forward_pre_hook(lambda m, args: pooled.append(Boxes.cat(args[1]).tensor))]
    hooks += [p.register_forward_hook(lambda m, args, out: outputs.append(out)) for p in heads.box_predictor]
    try:
        with torch.no_grad():
            (instances,) = heads._forward_box(features, [proposals])
    finally:
        for hook in hooks:
            hook.remove()
    return instances, pooled, outputs


@pytest.mark.parametrize("name", CASCADE_ENTRIES)
def test_cascade_entries_set_upstream_scores_and_box_coders(name):
    roi_heads = zoo.get_config(name).model.roi_heads
    assert roi_heads.score_fusion == "mean_logits"
    for predictor, stds in zip(roi_heads.box_predictors, UPSTREAM_CASCADE_STDS):
        assert list(predictor.box2box_transform.weights) == [1 / s for s in stds]


DETECTION_ENTRIES = sorted(n for n, m in MANIFEST.models.items() if m.task == "instance_segmentation")


def box_coders(cfg):
    """The box coders of a detection config with the stds they decode with: the RPN's, then
    each box predictor's."""
    predictors = cfg.model.roi_heads.get("box_predictors") or [cfg.model.roi_heads.box_predictor]
    coders = [cfg.model.proposal_generator.box2box_transform] + [p.box2box_transform for p in predictors]
    return [(instantiate(c), tuple(1 / w for w in c.weights)) for c in coders]


@pytest.mark.parametrize("name", DETECTION_ENTRIES)
def test_predicted_sizes_clamped_from_both_sides(name):
    """Log width and height ratios beyond +-log(1000/16) clamped (rule box_delta_clamp), in each
    release's box convention: boxes 62.5 times smaller or larger than their RoI, at most."""
    assert "box_delta_clamp" in MANIFEST.model(name).test_rules
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(64, 2, generator=g) * 500
    rois = torch.cat([xy, xy + torch.rand(64, 2, generator=g) * 400 + 0.5], dim=1)
    deltas = torch.randn(64, 4, generator=g) * 5
    deltas[:32, 2:] *= 20  # log ratios up to about +-100
    pixel = name.startswith("gcnet-v1/")
    for coder, stds in box_coders(zoo.get_config(name)):
        decoded = coder.apply_deltas(deltas, rois)
        decoded = torch.minimum(decoded.clamp(min=0), torch.tensor([1199.0, 800.0] * 2) - float(pixel))
        torch.testing.assert_close(decoded, upstream.delta2bbox(rois, deltas, stds, (800, 1199), pixel))


def test_cascade_follows_mmdetection_on_the_same_stage_outputs(cascade_heads):
    """Each stage refines the boxes of the one before with its own stds, the scores are the
    softmax of the mean logits: mmdetection's CascadeRoIHead, recomputed from the stage outputs."""
    features, proposals = random_inputs()
    instances, pooled, outputs = run_recording_stages(cascade_heads, features, proposals)
    rois = proposals.proposal_boxes.tensor.double()
    for stage, (_, deltas) in enumerate(outputs):
        torch.testing.assert_close(pooled[stage].double(), rois, rtol=0, atol=1e-3)  # float32 decoding
        rois = upstream.delta2bbox(rois, deltas.double(), UPSTREAM_CASCADE_STDS[stage], IMAGE_SIZE)
    scores = torch.softmax(sum(logits.double() for logits, _ in outputs) / len(outputs), dim=1)
    boxes, scores, labels = mmdet_multiclass_nms(rois, scores)
    assert len(instances) == len(boxes) > 10
    torch.testing.assert_close(instances.pred_boxes.tensor.double(), boxes, rtol=0, atol=1e-3)
    torch.testing.assert_close(instances.scores.double(), scores, rtol=0, atol=1e-6)
    assert torch.equal(instances.pred_classes, labels)


def test_detectron2_rules_differ_from_mmdetection(cascade_heads):
    """detectron2's rules (mean of the stage probabilities, third-stage weights 30 and 15) on the
    same stage outputs: the scores and the boxes move."""
    features, proposals = random_inputs()
    _, pooled, outputs = run_recording_stages(cascade_heads, features, proposals)
    logits = [stage_logits.double() for stage_logits, _ in outputs]
    mean_of_probabilities = sum(torch.softmax(x, dim=1) for x in logits) / 3
    assert (mean_of_probabilities - torch.softmax(sum(logits) / 3, dim=1)).abs().max() > 0.05
    deltas, rois = outputs[2][1], pooled[2]
    detectron2 = Boxes(Box2BoxTransform(weights=(30, 30, 15, 15)).apply_deltas(deltas, rois))
    detectron2.clip(IMAGE_SIZE)
    expected = upstream.delta2bbox(rois.double(), deltas.double(), UPSTREAM_CASCADE_STDS[2], IMAGE_SIZE)
    assert (detectron2.tensor.double() - expected).abs().max() > 0.1  # pixels


def mmseg_postprocess(logits, size, align_corners):
    """mmsegmentation's EncoderDecoder test: the logits resized to the original image size,
    then the softmax (whose argmax is the prediction)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners).softmax(dim=1)


MMSEG_ENTRIES = ["mmseg/gcnet_r50-d8_769x769_40k_cityscapes", "mmseg/gcnet_r50-d8_512x512_80k_ade20k"]


@pytest.mark.parametrize("name", MMSEG_ENTRIES)
def test_mmseg_entries_resize_the_logits_then_take_the_argmax(name):
    """The zoo model (random weights) on a 129x97 input whose output size is 128x96, as
    mmsegmentation's 2049x1025 test input of a 2048x1024 Cityscapes image."""
    torch.manual_seed(0)
    model = randomize_batchnorm_(instantiate(zoo.get_config(name).model)).eval()
    image, size = torch.rand(3, 97, 129) * 255, (96, 128)
    with torch.no_grad():
        (output,) = model([{"image": image, "height": size[0], "width": size[1]}])
        x = ((image - model.pixel_mean) / model.pixel_std)[None]
        logits = model._slide(x) if model.mode == "slide" else model.logits(x)
    align_corners = model.sem_seg_head.align_corners
    expected = mmseg_postprocess(logits, size, align_corners)[0]
    torch.testing.assert_close(output["sem_seg"], expected)
    assert torch.equal(output["sem_seg"].argmax(0), expected.argmax(0))
    resized_probabilities = F.interpolate(logits.softmax(1), size=size, mode="bilinear", align_corners=align_corners)[0]
    assert (resized_probabilities - expected).abs().max() > 1e-3  # the rule of gcnet's other configs differs


def test_mmseg_test_time_augmentation_averages_the_softmax_of_resized_logits():
    torch.manual_seed(0)
    backbone = build_gcnet_resnet(18, norm="BN", out_features=["res4", "res5"])
    head = ContextHead(in_feature="res5", in_channels=512, num_classes=4, channels=16, norm="BN")
    inference = dict(mode="whole", scales=[1.0, 0.75], flip=True, output_resize="logits")
    model = ContextSegmentor(
        backbone=backbone, sem_seg_head=head, pixel_mean=[0, 0, 0], pixel_std=[1, 1, 1], inference=inference
    )
    image, size = torch.randn(3, 40, 56), (37, 61)
    with torch.no_grad():
        predicted = model.eval().predict(image, *size)
        expected = 0
        for scale in (1.0, 0.75):
            x = image[None] if scale == 1 else F.interpolate(image[None], scale_factor=scale, mode="bilinear")
            for flip in (False, True):
                logits = model.logits(x.flip(-1) if flip else x)
                expected = expected + mmseg_postprocess(logits.flip(-1) if flip else logits, size, False)
    torch.testing.assert_close(predicted, expected[0] / 4)


def test_rule_options_are_checked():
    cfg = zoo.get_config(CASCADE_ENTRIES[0])
    cfg.model.roi_heads.score_fusion = "max_logits"
    with pytest.raises(
        ValueError, match=r"score_fusion must be one of \('mean_probabilities', 'mean_logits'\), got 'max_logits'"
    ):
        instantiate(cfg.model.roi_heads)
    backbone = build_gcnet_resnet(18, norm="BN", out_features=["res5"])
    head = ContextHead(in_feature="res5", in_channels=512, num_classes=4, channels=8, norm="BN")
    with pytest.raises(
        ValueError, match=r"inference.output_resize must be one of \('probabilities', 'logits'\), got 'labels'"
    ):
        ContextSegmentor(
            backbone=backbone,
            sem_seg_head=head,
            pixel_mean=[0] * 3,
            pixel_std=[1] * 3,
            inference=dict(output_resize="labels"),
        )
