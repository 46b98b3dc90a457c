"""Every default in one place: the configs and the yacs keys derive theirs from the signatures."""

from omegaconf import OmegaConf

from detectron2.config import LazyConfig, get_cfg

from gcnet.layers import ContextBlock, NonLocalBlock
from gcnet.modeling import ContextHead, add_gcnet_config, gcnet_resnet_defaults, option_defaults
from gcnet.modeling.backbone.resnet import RENAMED_YACS_KEYS, YACS_KEYS
from gcnet.modeling.defaults import options_from_yacs, yacs_defaults

from ..helpers import CONFIGS

MASK_RCNN = CONFIGS / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_1x.py"


def backbone_options(path):
    node = OmegaConf.to_container(LazyConfig.load(str(path)).model.backbone.bottom_up)
    node.pop("_target_")
    return node


def test_the_mask_rcnn_backbone_is_every_option_at_its_default_but_freeze_at():
    assert backbone_options(MASK_RCNN) == dict(gcnet_resnet_defaults(), freeze_at=2)


def test_context_options_are_spelt_out():
    defaults = option_defaults(ContextHead)
    assert defaults["gc"] == {
        "ratio": 1 / 4,
        "pooling_type": "att",
        "fusion_types": ["channel_add"],
        "transform": "bottleneck_ln_relu",
    }
    assert defaults["nl"] == {"mode": "embedded_gaussian", "reduction": 2, "use_scale": True}
    assert gcnet_resnet_defaults()["gc"]["ratio"] == 1 / 16 and "stem_out_channels" not in gcnet_resnet_defaults()


def test_yacs_keys_default_to_the_options_defaults():
    cfg = get_cfg()
    add_gcnet_config(cfg)
    assert set(cfg.MODEL.GCNET) == set(YACS_KEYS) | set(RENAMED_YACS_KEYS)
    expected = dict(yacs_defaults(YACS_KEYS, gcnet_resnet_defaults()), **dict.fromkeys(RENAMED_YACS_KEYS))
    # The two yacs-only choices: a GC-ResNet, and res5's dilation from MODEL.RESNETS.
    assert dict(cfg.MODEL.GCNET, CONTEXT=None, DILATIONS=[1, 1, 1, 1]) == expected
    assert cfg.MODEL.GCNET.CONTEXT == "gc" and cfg.MODEL.GCNET.DILATIONS == []
    assert cfg.MODEL.GCNET.CONTEXT_STAGES == ["res3", "res4", "res5"]
    options = options_from_yacs(cfg.MODEL.GCNET_SEG, {"GC_RATIO": "gc.ratio", "NL_MODE": "nl.mode"})
    assert options == {"gc": {"ratio": 1 / 4}, "nl": {"mode": "embedded_gaussian"}}


def test_a_default_changed_in_its_signature_reaches_configs_and_yacs(monkeypatch):
    """Where the GC block's ratio and the NL block's reduction default is the one place to
    change them: the LazyConfigs and the yacs keys follow."""
    monkeypatch.setattr(ContextBlock.__init__, "__defaults__", (1 / 8, "att", ("channel_add",), "bottleneck_ln_relu"))
    monkeypatch.setattr(NonLocalBlock.__init__, "__defaults__", ("gaussian", 4, True, None))
    options = backbone_options(MASK_RCNN)
    assert options["gc"]["ratio"] == 1 / 8 and options["nl"] == {"mode": "gaussian", "reduction": 4, "use_scale": True}
    cfg = get_cfg()
    add_gcnet_config(cfg)
    assert cfg.MODEL.GCNET.GC_RATIO == 1 / 8 and cfg.MODEL.GCNET.NL_MODE == "gaussian"
    assert (
        cfg.MODEL.GCNET_SEG.GC_RATIO == 1 / 4 and cfg.MODEL.GCNET_SEG.NL_REDUCTION == 4
    )  # the head's ratio is its own
