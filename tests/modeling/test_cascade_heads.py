"""MultiMaskCascadeROIHeads: a mask head per cascade stage, trained on that stage's RoIs with
the stage loss weights, and averaged at test time."""

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from ..helpers import CONFIGS

CASCADE = CONFIGS / "common" / "models" / "cascade_mask_rcnn_gcnet_fpn.py"


def build(**roi_heads):
    cfg = LazyConfig.load(str(CASCADE))
    cfg.model.backbone.bottom_up.depth = 18
    cfg.model.roi_heads.num_classes = 3
    for key, value in roi_heads.items():
        setattr(cfg.model.roi_heads, key, value)
    torch.manual_seed(0)
    return instantiate(cfg.model)


def batch():
    image = torch.randint(0, 256, (3, 128, 160), generator=torch.Generator().manual_seed(1)).float()
    instances = Instances((128, 160))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 70.0, 100.0], [80.0, 30.0, 150.0, 90.0]]))
    instances.gt_classes = torch.tensor([0, 2])
    masks = torch.zeros(2, 128, 160, dtype=torch.bool)
    masks[0, 20:100, 10:70] = True
    masks[1, 30:90, 80:150] = True
    instances.gt_masks = BitMasks(masks)
    return [{"image": image, "instances": instances, "height": 128, "width": 160}]


def losses(model):
    torch.manual_seed(0)  # the same RoI sampling in every call
    with EventStorage():
        return model(batch())


def test_every_stage_has_a_weighted_mask_loss():
    weighted = losses(build())
    unweighted = losses(build(stage_loss_weights=None))
    for name in ("loss_cls", "loss_box_reg", "loss_mask"):
        for stage, weight in enumerate([1.0, 0.5, 0.25]):
            key = f"{name}_stage{stage}"
            assert unweighted[key] > 0
            torch.testing.assert_close(weighted[key], unweighted[key] * weight)


def test_later_stages_train_their_mask_head_on_their_own_rois():
    model = build()
    losses(model)["loss_mask_stage2"].backward()
    heads = model.roi_heads.mask_head
    assert heads[2].predictor.weight.grad.abs().sum() > 0
    assert heads[0].predictor.weight.grad is None and heads[1].predictor.weight.grad is None


def test_test_time_masks_average_the_stage_probabilities():
    model = build().eval()
    for head, bias in zip(model.roi_heads.mask_head, [0.0, 2.0, -1.0]):
        torch.nn.init.zeros_(head.predictor.weight)
        torch.nn.init.constant_(head.predictor.bias, bias)
    with torch.no_grad():
        (instances,) = model.inference(batch(), do_postprocess=False)
    assert len(instances) > 0 and instances.pred_masks.shape[1:] == (1, 28, 28)
    expected = torch.sigmoid(torch.tensor([0.0, 2.0, -1.0])).mean()
    torch.testing.assert_close(instances.pred_masks, torch.full_like(instances.pred_masks, expected.item()))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("mask_head", "one", "mask_head must hold one head per cascade stage (3), got 1"),
        ("stage_loss_weights", [1.0, 0.5], "stage_loss_weights must have 3 values, got [1.0, 0.5]"),
    ],
)
def test_stage_counts_are_checked(key, value, message):
    cfg = LazyConfig.load(str(CASCADE))
    if value == "one":
        value = cfg.model.roi_heads.mask_head[:1]
    setattr(cfg.model.roi_heads, key, value)
    with pytest.raises(ValueError) as e:
        instantiate(cfg.model.roi_heads)
    assert message in str(e.value)
