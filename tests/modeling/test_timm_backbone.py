"""TimmBackbone: timm's ImageNet-pretrained GC networks as detectron2 backbones, their weights
from a local file, the errors when they cannot be had, the Mask R-CNN configs, and a few
training iterations on balloon."""

import math

import pytest
import timm
import torch
from safetensors.torch import save_file

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_backbone

from gcnet.data import load_coco_instances
from gcnet.engine import GCNetTrainer
from gcnet.modeling import TimmBackbone, add_timm_backbone_config, build_gcnet_resnet

from ..helpers import CONFIGS, REPO_ROOT, num_parameters, run_tool

MODELS = ["gcresnet50t", "gcresnext50ts"]
COCO = CONFIGS / "COCO-InstanceSegmentation"
TIMM_CONFIGS = {name: COCO / f"mask_rcnn_timm_{name}_FPN_1x.py" for name in MODELS}
TINY_TIMM_CONFIG = REPO_ROOT / "tests" / "configs" / "mask_rcnn_timm_gc_tiny_balloon.py"

# Parameters with every BatchNorm counted (norm="BN"): timm's ImageNet classifiers and their
# strides-4 to 32 trunks, next to the paper's GC-ResNet-50 (Tables 8 and 9: 28.08M, 77.49% top-1).
PAPER_GC_RESNET50_PARAMS = 28.08e6
TIMM_PARAMS = {  # name: (classifier, trunk)
    "gcresnet50t": (25_897_080, 23_848_080),
    "gcresnext50ts": (15_667_320, 13_618_320),
}


def randomized_timm_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A plain timm model (with its classifier) whose every weight and BatchNorm statistic is
    random, GC blocks included (timm starts their last conv at zero)."""
    torch.manual_seed(seed)
    model = timm.create_model(name).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = (
                    torch.rand(tensor.shape, generator=g) + 0.5
                    if key.endswith("running_var")
                    else torch.randn(tensor.shape, generator=g) * 0.05
                )
                tensor.copy_(values)
    return model


def plain_stage_features(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """The outputs of the plain timm model's modules at strides 4-32 (its feature_info), by
    forward hooks: the features the wrapped model must reproduce."""
    info = [i for i in model.feature_info if i["reduction"] >= 4]
    outputs = {}
    names = {i["module"]: f"res{int(math.log2(i['reduction']))}" for i in info}
    handles = [
        model.get_submodule(module).register_forward_hook(lambda m, inp, out, name=name: outputs.__setitem__(name, out))
        for module, name in names.items()
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return outputs


def flat_name(key: str) -> str:
    """A state-dict key with "_" and "." alike: timm's feature model flattens ``stages.0`` to
    ``stages_0``."""
    return key.replace("_", ".")


@pytest.mark.parametrize("name", MODELS)
def test_random_init_backbone_has_the_stages_and_gc_blocks(name):
    backbone = TimmBackbone(name, pretrained=False)
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (256, 4),
        "res3": (512, 8),
        "res4": (1024, 16),
        "res5": (2048, 32),
    }
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 96, 128))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "res2": (1, 256, 24, 32),
        "res3": (1, 512, 12, 16),
        "res4": (1, 1024, 6, 8),
        "res5": (1, 2048, 3, 4),
    }
    gc_blocks = [m for m in backbone.modules() if isinstance(m, timm.layers.GlobalContext)]
    blocks = sum(len(getattr(backbone.model, f"stages_{i}")) for i in range(4))
    assert len(gc_blocks) == blocks == 16  # one in every residual block, c2 included


def test_out_features_and_freezing():
    backbone = TimmBackbone("gcresnet50t", pretrained=False, out_features=["res3", "res4"], freeze_at=2, norm="BN")
    assert list(backbone.output_shape()) == ["res3", "res4"]
    assert "final_conv" not in dict(backbone.model.named_children()) and "stages_3" not in dict(
        backbone.model.named_children()
    )
    stages = backbone.stage_children()
    assert stages == {
        "stem": ["stem_conv1", "stem_conv2", "stem_conv3"],
        "res2": ["stages_0"],
        "res3": ["stages_1"],
        "res4": ["stages_2"],
    }
    for stage, trainable in (("stem", False), ("res2", False), ("res3", True), ("res4", True)):
        modules = [getattr(backbone.model, c) for c in stages[stage]]
        assert all(p.requires_grad == trainable for m in modules for p in m.parameters()), stage
        norms = {type(n).__name__ for m in modules for n in m.modules() if "BatchNorm" in type(n).__name__}
        assert norms == ({"BatchNormAct2d"} if trainable else {"FrozenBatchNormAct2d"}), stage
    frozen_bn = TimmBackbone("gcresnext50ts", pretrained=False, freeze_at=0)
    assert all(p.requires_grad for p in frozen_bn.parameters())
    assert not [m for m in frozen_bn.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # norm="FrozenBN"
    assert TimmBackbone("gcresnext50ts", pretrained=False, freeze_at=1).stage_children()["stem"][-1] == "stem_pool"


@pytest.mark.parametrize("name,suffix", [("gcresnet50t", ".pth"), ("gcresnext50ts", ".safetensors")])
def test_plain_timm_state_dict_loads_with_identical_stage_features(name, suffix, tmp_path):
    plain = randomized_timm_model(name)
    path = str(tmp_path / f"{name}{suffix}")
    if suffix == ".pth":
        torch.save(plain.state_dict(), path)
    else:
        save_file(plain.state_dict(), path)
    wrapped = TimmBackbone(name, pretrained_file=path, norm="BN").eval()

    # Nothing missing: every tensor of the wrapped model is the file's; only the classifier is left.
    saved = {flat_name(k): v for k, v in plain.state_dict().items()}
    loaded = {flat_name(k.removeprefix("model.")): v for k, v in wrapped.state_dict().items()}
    assert set(saved) - set(loaded) == {"head.fc.weight", "head.fc.bias"}
    assert all(torch.equal(v, saved[k]) for k, v in loaded.items())

    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    expected = plain_stage_features(plain, x)
    with torch.no_grad():
        features = wrapped(x)
    assert list(features) == ["res2", "res3", "res4", "res5"]
    for stage in features:
        assert torch.equal(features[stage], expected[stage]), stage
    with torch.no_grad():  # with fixed BN (the configs' norm), equal up to rounding
        frozen = TimmBackbone(name, pretrained_file=path, freeze_at=2)(x)
    for stage in frozen:
        torch.testing.assert_close(frozen[stage], expected[stage], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_beside_the_papers_gc_resnet50(name):
    classifier, trunk = TIMM_PARAMS[name]
    assert num_parameters(timm.create_model(name)) == classifier
    assert num_parameters(TimmBackbone(name, pretrained=False, norm="BN")) == trunk
    ours = build_gcnet_resnet(
        50, norm="BN", context="gc", gc=dict(ratio=1 / 16), num_classes=1000, out_features=["linear"]
    )
    assert abs(num_parameters(ours) / PAPER_GC_RESNET50_PARAMS - 1) < 0.001  # the paper's GC-ResNet-50, r16 c3-c5
    assert classifier < PAPER_GC_RESNET50_PARAMS


def test_weights_of_another_model_are_refused_in_one_line(tmp_path):
    path = tmp_path / "gcresnext26ts.pth"
    torch.save(timm.create_model("gcresnext26ts").state_dict(), path)
    with pytest.raises(ValueError) as info:
        TimmBackbone("gcresnet50t", pretrained_file=str(path))
    message = str(info.value)
    assert message.startswith(f"pretrained_file {path} does not hold timm's gcresnet50t: ") and "\n" not in message
    assert "missing keys (first: " in message and "shape mismatches (first: " in message


@pytest.mark.parametrize(
    "content,kwargs,error,message",
    [
        (
            None,
            dict(pretrained_file="{tmp}/missing.pth"),
            FileNotFoundError,
            "pretrained_file {tmp}/missing.pth: no such file (expected a state dict of timm's gcresnet50t)",
        ),
        (
            b"not a checkpoint",
            dict(pretrained_file="{tmp}/bad.pth"),
            ValueError,
            "pretrained_file {tmp}/bad.pth is not a readable state dict of timm's gcresnet50t (expected tensors "
            "saved by torch.save or safetensors; RuntimeError: weights_only=True blocked loading",
        ),
        (
            None,
            dict(pretrained=False, pretrained_file="{tmp}/w.pth"),
            ValueError,
            "TimmBackbone('gcresnet50t'): pretrained_file='{tmp}/w.pth' is given but pretrained=False; set "
            "pretrained=True to load it, or leave pretrained_file empty",
        ),
        (
            None,
            dict(pretrained=False, norm="GN"),
            ValueError,
            "TimmBackbone: norm must be one of ['FrozenBN', 'BN', 'SyncBN'], got 'GN'",
        ),
        (
            None,
            dict(pretrained=False, out_features=["res6"]),
            ValueError,
            "TimmBackbone: out_features must be some of ['res2', 'res3', 'res4', 'res5'], got ['res6']",
        ),
    ],
)
def test_bad_options_fail_in_one_line(content, kwargs, error, message, tmp_path):
    if content is not None:
        (tmp_path / "bad.pth").write_bytes(content)
    kwargs = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(error) as info:
        TimmBackbone("gcresnet50t", **kwargs)
    assert str(info.value).startswith(message.format(tmp=tmp_path)) and "\n" not in str(info.value)


def test_unknown_model_names_close_ones():
    with pytest.raises(
        ValueError,
        match=r"^TimmBackbone: timm has no model 'gcresnet51t'; close: gcresnet50t, gcresnext50ts, resnet51q$",
    ):
        TimmBackbone("gcresnet51t", pretrained=False)


def test_offline_train_net_says_how_to_get_the_weights(datasets_root, tmp_path):
    """Offline and with nothing in timm's cache, train_net stops in one line that names the
    model and the two ways out, before any image is read."""
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        TIMM_CONFIGS["gcresnet50t"],
        f"train.output_dir={tmp_path / 'out'}",
        "train.device=cpu",
        "dataloader.train.dataset.names=balloon_train",
        "dataloader.test.dataset.names=balloon_val",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "DETECTRON2_DATASETS": str(datasets_root)},
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "train_net: Cannot get the ImageNet weights of timm's gcresnet50t: not in timm's cache, and the download "
        "failed ("
    )
    assert last.endswith(
        "); set pretrained_file to a local state dict of the model (e.g. gcresnet50t.safetensors), or "
        "pretrained=False to train from random init"
    )


@pytest.mark.parametrize("name", MODELS)
def test_coco_configs_build_the_named_model(name):
    cfg = LazyConfig.load(str(TIMM_CONFIGS[name]))
    bottom_up = cfg.model.backbone.bottom_up
    assert (bottom_up.model_name, bottom_up.pretrained, bottom_up.norm, bottom_up.freeze_at) == (
        name,
        True,
        "FrozenBN",
        2,
    )
    assert cfg.train.init_checkpoint == "" and cfg.train.max_iter == 90000
    assert cfg.model.input_format == "RGB" and cfg.model.pixel_mean == [
        123.675,
        116.28,
        103.53,
    ]  # timm's ImageNet mean, RGB
    bottom_up.pretrained = False
    model = instantiate(cfg.model).eval()
    assert isinstance(model.backbone.bottom_up, TimmBackbone) and model.backbone.bottom_up.model_name == name
    with torch.no_grad():
        (output,) = model([{"image": torch.randint(0, 256, (3, 120, 160)).float(), "height": 240, "width": 320}])
    assert output["instances"].image_size == (240, 320)


def test_yacs_config_builds_the_fpn_backbone():
    cfg = get_cfg()
    add_timm_backbone_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_timm_fpn_backbone"
    cfg.MODEL.TIMM.NAME = "gcresnext50ts"
    cfg.MODEL.TIMM.PRETRAINED = False
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    backbone = build_backbone(cfg)
    assert isinstance(backbone.bottom_up, TimmBackbone) and backbone.bottom_up.model_name == "gcresnext50ts"
    assert {k: v.stride for k, v in backbone.output_shape().items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    stem = backbone.bottom_up.model.stem_conv1
    assert not any(p.requires_grad for p in stem.parameters())  # MODEL.BACKBONE.FREEZE_AT = 2


class RecordLoss:
    def __init__(self):
        self.losses = []

    def __call__(self, trainer):
        self.losses.append(trainer.storage.history("total_loss").latest())


@pytest.mark.parametrize("name", MODELS)
def test_random_init_model_trains_on_balloon(name, shared_data):
    """A few iterations of the tests' tiny Mask R-CNN on timm's backbone from random init:
    finite losses, every trainable stage moves, the frozen stem and res2 do not."""
    from detectron2.engine import hooks

    cfg = LazyConfig.load(str(TINY_TIMM_CONFIG))
    cfg.model.backbone.bottom_up.model_name = name
    balloon = shared_data / "balloon"
    cfg.dataloader.train.dataset = L(load_coco_instances)(
        json_file=str(balloon / "annotations" / "balloon_instances_train.json"),
        image_root=str(balloon / "train"),
        dataset_name="balloon_train",
    )
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    before = {k: v.clone() for k, v in model.backbone.bottom_up.state_dict().items()}
    cfg.optimizer.params.model = model
    trainer = GCNetTrainer(model, instantiate(cfg.dataloader.train), instantiate(cfg.optimizer))
    record = RecordLoss()
    trainer.register_hooks([hooks.CallbackHook(after_step=record)])
    trainer.train(0, 3)
    assert len(record.losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in record.losses)
    after = model.backbone.bottom_up.state_dict()
    stages = model.backbone.bottom_up.stage_children()
    for stage, children in stages.items():
        keys = [k for k in before if k.split(".")[1] in children]
        moved = any(not torch.equal(before[k], after[k]) for k in keys)
        assert moved == (stage not in ("stem", "res2")), stage
