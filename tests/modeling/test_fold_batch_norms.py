"""gcnet.modeling.fold_batch_norms: every fixed BatchNorm of every zoo architecture folded into
its conv, and the folded model computing what the model computed (random weights and
statistics, tiny inputs), to 1e-5 of each output's scale."""

import copy
import functools

import pytest
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import GeneralizedRCNN

import gcnet.model_zoo as model_zoo
from gcnet.engine import apply_overrides
from gcnet.layers import NonLocalBlock
from gcnet.model_zoo.manifest import default_manifest, resource_path
from gcnet.modeling import DeformConv2d, SyncBatchNorm, fold_batch_norms

from ..helpers import randomize_norms_

# Zoo entries whose models hold every kind of module, and every place of a norm, of the zoo's
# models: test_the_representatives_cover_the_zoo checks that each entry's architecture is
# covered by one of them (the same meta-architecture and norms, a subset of its parts).
REPRESENTATIVES = [
    "gcnet-v1/mask_rcnn_r16_gcb_c3-c5_r50_fpn_1x",
    "gcnet-v1/mask_rcnn_r16_gcb_c3-c5_x101_32x4d_fpn_syncbn_1x",
    "gcnet-v1/cascade_mask_rcnn_r16_gcb_dconv_c3-c5_x101_32x4d_fpn_syncbn_1x",
    "mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco",
    "mmdet/cascade_mask_rcnn_x101_32x4d_fpn_syncbn-backbone_dconv_c3-c5_r16_gcb_c3-c5_1x_coco",
    "mmseg/gcnet_r50-d8_512x1024_40k_cityscapes",
]
FIXED_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)  # SyncBN (gcnet's, detectron2's) is a BatchNorm2d


def architecture(cfg) -> tuple:
    """(meta-architecture, backbone norm, FPN norm, stem) and the set of optional parts a zoo
    model has (a cascade, grouped convs, GC blocks, DCN); not its depth, widths or inference
    settings."""
    model = cfg.model
    bottom_up = model.backbone.get("bottom_up", model.backbone)
    target = model._target_ if isinstance(model._target_, str) else model._target_.__qualname__
    parts = {
        "cascade": "box_heads" in model.get("roi_heads", {}),
        "grouped": bottom_up.num_groups > 1,
        "gc": bottom_up.context == "gc",
        "dcn": bool(bottom_up.deform_stages),
    }
    return (target, bottom_up.norm, str(model.backbone.get("norm")), bottom_up.stem), {k for k, v in parts.items() if v}


def test_the_representatives_cover_the_zoo():
    """Each entry's config file is loaded once (entries of one file differ in their overrides)."""
    load = functools.lru_cache(maxsize=None)(lambda path: LazyConfig.load(str(resource_path(path))))
    found = {
        name: architecture(apply_overrides(copy.deepcopy(load(entry.config)), entry.config_overrides))
        for name, entry in default_manifest().models.items()
    }
    representatives = [found[name] for name in REPRESENTATIVES]
    covered = {n for n, (kind, parts) in found.items() if any(k == kind and p >= parts for k, p in representatives)}
    assert sorted(set(found) - covered) == []


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-12)).item()


def outputs(model: nn.Module, image: torch.Tensor) -> dict:
    with torch.no_grad():
        if isinstance(model, GeneralizedRCNN):
            instances = model.inference([{"image": image}], do_postprocess=False)[0]
            fields = {k: getattr(v, "tensor", v) for k, v in instances.get_fields().items()}
        else:
            fields = {"sem_seg": model([{"image": image, "height": 64, "width": 64}])[0]["sem_seg"]}
        features = model.backbone(((image - model.pixel_mean) / model.pixel_std)[None])
    return {**fields, **{f"backbone.{k}": v for k, v in features.items()}}


def norms(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, FIXED_NORMS)]


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_folding_is_exact_on_every_zoo_architecture(name):
    # At most 8 RoIs per image: the architecture is the zoo's, the work of its heads small.
    overrides = [] if "mmseg" in name else ["model.proposal_generator.post_nms_topk=[2000,8]"]
    cfg = apply_overrides(model_zoo.get_config(name), overrides)
    torch.manual_seed(0)
    model = randomize_norms_(instantiate(cfg.model)).eval()
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
    expected = outputs(model, image)
    count = len(norms(model))
    layer_norms = sum(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert fold_batch_norms(model) == count > 0
    assert norms(model) == [] and sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == layer_norms
    folded = outputs(model, image)
    assert folded.keys() == expected.keys()
    for key, value in expected.items():
        assert folded[key].shape == value.shape, key
        if not value.is_floating_point():
            assert torch.equal(folded[key], value), key
        elif value.numel():
            assert relative_difference(folded[key], value) <= 1e-5, key


def test_deformable_and_non_local_norms_fold_exactly():
    torch.manual_seed(0)
    deform = DeformConv2d(4, 6, 3, padding=1, bias=False, norm=FrozenBatchNorm2d(6))
    non_local = NonLocalBlock(6, norm=nn.BatchNorm2d)
    model = randomize_norms_(nn.ModuleDict(dict(deform=deform, non_local=non_local))).eval()
    with torch.no_grad():
        nn.init.normal_(non_local.norm.weight)
    x, offset = torch.randn(2, 4, 5, 7), torch.randn(2, 18, 5, 7)
    with torch.no_grad():
        expected = non_local(deform(x, offset))
        assert fold_batch_norms(model) == 2 and deform.norm is None and non_local.norm is None
        assert relative_difference(non_local(deform(x, offset)), expected) <= 1e-5


def test_sequential_pairs_fold_and_other_norms_stay():
    torch.manual_seed(0)
    sequential = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))
    acting = Conv2d(3, 4, 1, activation=nn.ReLU())  # detectron2's Conv2d applies its activation before the next module
    model = randomize_norms_(nn.Sequential(sequential, nn.Sequential(acting, nn.BatchNorm2d(4)))).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = model[0](x), model[1](x)
        assert fold_batch_norms(model) == 1
        assert isinstance(sequential[1], nn.Identity) and isinstance(sequential[4], nn.GroupNorm)
        assert isinstance(model[1][1], nn.BatchNorm2d)
        assert relative_difference(model[0](x), expected[0]) <= 1e-5 and torch.equal(model[1](x), expected[1])


def test_training_models_and_training_norms_are_not_folded():
    conv = Conv2d(3, 4, 1, bias=False, norm=SyncBatchNorm(4))
    message = r"fold_batch_norms: Conv2d is in training mode; fold for inference \(model.eval\(\)\)"
    with pytest.raises(ValueError, match=message):
        fold_batch_norms(conv)
    model = nn.Sequential(conv).eval()
    conv.norm.train()  # a norm that still trains inside an eval model keeps its batch statistics
    assert fold_batch_norms(model) == 0 and isinstance(conv.norm, SyncBatchNorm)


def test_a_conv_that_transforms_its_weight_is_not_folded_into():
    """A conv subclass may change its weight before convolving (timm's StdConv2d standardises
    it): folding a norm into that weight would change what it computes."""

    class StandardizedConv2d(nn.Conv2d):
        def forward(self, x):
            weight = (self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)) / 2
            return nn.functional.conv2d(x, weight, self.bias)

    model = randomize_norms_(nn.Sequential(StandardizedConv2d(3, 4, 1), nn.BatchNorm2d(4))).eval()
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        expected = model(x)
        assert fold_batch_norms(model) == 0
        assert torch.equal(model(x), expected)
