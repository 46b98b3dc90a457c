"""Command-line overrides: unknown keys are refused with the closest valid ones."""
import pytest

from detectron2.config import LazyConfig

from gcnet.engine import apply_overrides, load_config

from ..helpers import CONFIGS


@pytest.fixture(scope="module")
def cfg():
    return LazyConfig.load(str(CONFIGS / "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py"))


def test_known_keys_are_applied(cfg):
    cfg = apply_overrides(cfg, ["train.max_iter=7", "model.backbone.bottom_up.gc.ratio=0.25"])
    assert cfg.train.max_iter == 7 and cfg.model.backbone.bottom_up.gc.ratio == 0.25


@pytest.mark.parametrize(
    "override,closest",
    [
        ("train.max_iterr=5", "train.max_iter"),
        ("model.backbone.bottom_up.gc_ratio=0.25", "model.backbone.bottom_up.gc.ratio, model.backbone.bottom_up.gc_position"),
        ("train.amp.enable=True", "train.amp.enabled"),
        ("max_iter=3", "train.max_iter"),
    ],
)
def test_unknown_key_names_the_closest(cfg, override, closest):
    key = override.split("=")[0]
    with pytest.raises(ValueError) as info:
        apply_overrides(cfg, [override])
    assert str(info.value) == f"Unknown config key {key!r} in override {override!r}; closest valid keys: {closest}"


def test_override_without_value(cfg):
    with pytest.raises(ValueError, match="Override 'train.max_iter' is not of the form key=value"):
        apply_overrides(cfg, ["train.max_iter"])


def test_load_config_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError) as e:
        load_config(str(tmp_path / "missing.py"))
    assert str(e.value) == f"{tmp_path / 'missing.py'}: no such config file"
