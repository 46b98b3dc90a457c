"""ImageNet weights in torchvision layout, converted into GC backbones: exact features, and only
the GC parameters left to initialise."""

import pickle

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from detectron2.config import LazyConfig, instantiate

from gcnet.engine import GCNetCheckpointer
from gcnet.model_zoo import UnconvertedKeysError
from gcnet.model_zoo.converters.imagenet import convert_torchvision_resnet
from gcnet.modeling import build_gcnet_resnet

from ..helpers import CONFIGS
from .upstream_layouts import randomize_batchnorm_


def randomized_torchvision(builder):
    torch.manual_seed(0)
    return randomize_batchnorm_(builder().eval())


def save_converted(model, path):
    """The converted weights as a .pkl of detectron2's ImageNet models (numpy arrays, as
    detectron2's convert-torchvision-to-d2.py writes R-50.pkl)."""
    converted = convert_torchvision_resnet(model.state_dict())
    converted["model"] = {k: v.detach().numpy() for k, v in converted["model"].items()}
    with open(path, "wb") as f:
        pickle.dump(converted, f)
    return str(path)


def load_with_report(model, path):
    """Load like GCNetCheckpointer.load; return the missing and unexpected keys it reports
    (BatchNorm's step counters are not weights, and not reported)."""
    checkpointer = GCNetCheckpointer(model)
    checkpointer.load(str(path))
    return set(checkpointer.fit.missing_keys), set(checkpointer.fit.unexpected_keys)


@pytest.mark.parametrize(
    "builder,depth,groups,width",
    [
        (torchvision.models.resnet18, 18, 1, 64),
        (torchvision.models.resnet50, 50, 1, 64),
        (torchvision.models.resnext50_32x4d, 50, 32, 4),
    ],
)
def test_converted_backbone_equals_torchvision(builder, depth, groups, width, tmp_path):
    reference = randomized_torchvision(builder)
    path = save_converted(reference, tmp_path / "converted.pkl")
    model = build_gcnet_resnet(
        depth,
        norm="FrozenBN",
        stride_in_1x1=False,
        num_groups=groups,
        width_per_group=width,
        context="gc",
        num_classes=1000,
        out_features=["res5", "linear"],
    ).eval()
    missing, unexpected = load_with_report(model, path)
    assert missing and all(".context_block." in k for k in missing)
    assert not unexpected
    x = torch.randn(2, 3, 96, 64)
    features = create_feature_extractor(reference, {"layer4": "res5", "fc": "linear"})(x)
    with torch.no_grad():
        outputs = model(x)
    torch.testing.assert_close(outputs["res5"], features["res5"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outputs["linear"], features["linear"], rtol=1e-4, atol=1e-4)


def test_gc_mask_rcnn_reports_only_gc_and_new_layers_missing(tmp_path):
    path = save_converted(randomized_torchvision(torchvision.models.resnet50), tmp_path / "r50.pkl")
    cfg = LazyConfig.load(str(CONFIGS / "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py"))
    model = instantiate(cfg.model)
    missing, unexpected = load_with_report(model, path)
    backbone_missing = {k for k in missing if k.startswith("backbone.bottom_up.")}
    gc_params = {k for k in model.state_dict() if ".context_block." in k}
    assert backbone_missing == gc_params and len(gc_params) == 13 * 8
    assert all(
        k.startswith(("backbone.fpn_", "backbone.bottom_up.", "proposal_generator.", "roi_heads.")) for k in missing
    )
    assert unexpected == {"linear.weight", "linear.bias"}  # the ImageNet classifier


def test_unknown_upstream_keys_stop_the_conversion():
    state = torchvision.models.resnet18().state_dict()
    state["layer1.0.se.fc1.weight"] = torch.zeros(4, 64)
    with pytest.raises(
        UnconvertedKeysError, match=r"1 upstream keys could not be converted: layer1.0.se.fc1.weight \[4, 64\]"
    ):
        convert_torchvision_resnet(state)
