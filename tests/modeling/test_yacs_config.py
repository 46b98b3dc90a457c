"""The registered backbones, built from yacs configs, and the shipped YAML config trained with
detectron2's DefaultTrainer."""

import json
import math

import pytest
import torch

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.backbone import FPN, ResNet

from gcnet.engine.config import detectron2_config_file
from gcnet.layers import ContextBlock
from gcnet.modeling import add_gcnet_config

from ..helpers import CONFIGS, num_parameters, run_tool


def gcnet_cfg(base="COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"):
    cfg = get_cfg()
    add_gcnet_config(cfg)
    cfg.merge_from_file(detectron2_config_file(base))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_mask_rcnn_with_gcnet_fpn_backbone():
    cfg = gcnet_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_gcnet_resnet_fpn_backbone"
    model = build_model(cfg).eval()
    assert isinstance(model.backbone, FPN)
    gc_blocks = [m for m in model.backbone.bottom_up.modules() if isinstance(m, ContextBlock)]
    assert len(gc_blocks) == 4 + 6 + 3
    # Table 5 "+all GC" is 46.9M with SyncBN; detectron2's yacs default is FrozenBN, whose
    # affine terms are buffers (53k values fewer).
    assert abs(num_parameters(model) / 46.9e6 - 1) < 0.003
    with torch.no_grad():
        (output,) = model([{"image": torch.zeros(3, 64, 96)}])
    assert output["instances"].image_size == (64, 96)


def test_yacs_keys_reach_the_blocks():
    cfg = gcnet_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_gcnet_resnet_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    cfg.MODEL.RESNETS.NUM_GROUPS, cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 32, 4
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, True, True]
    cfg.MODEL.RESNETS.DEFORM_MODULATED = True
    cfg.MODEL.GCNET.CONTEXT_STAGES = ["res4"]
    cfg.MODEL.GCNET.GC_RATIO = 1 / 4
    cfg.MODEL.GCNET.GC_POOLING_TYPE = "avg"
    cfg.MODEL.GCNET.GC_FUSION_TYPES = ["channel_mul"]
    cfg.MODEL.GCNET.CONTEXT_POSITION = "afterAdd"
    cfg.MODEL.GCNET.EXTRA_CONTEXT = "nl"
    cfg.MODEL.GCNET.NL_MODE = "dot_product"
    backbone = build_backbone(cfg)
    assert isinstance(backbone, ResNet)
    block = backbone.res4[0]
    assert block.context_block.planes == 256 and block.context_block.pooling_type == "avg"
    assert block.context_block.fusion_types == ("channel_mul",) and block.context_position == "afterAdd"
    assert backbone.res2[0].context_block is None
    assert block.conv2_offset.out_channels == 27 and backbone.res3[0].conv2_offset is None
    assert backbone.res2[0].conv2.groups == 32
    assert backbone.res4[4].extra_context.mode == "dot_product"
    assert backbone(torch.zeros(1, 3, 64, 64))["res5"].shape == (1, 2048, 2, 2)


def test_renamed_yacs_keys_still_set_their_options(monkeypatch):
    """The MODEL.GCNET.* keys of earlier releases, in a file or a list of overrides, set the
    option of their new key and say its name once."""
    from gcnet.modeling import defaults

    monkeypatch.setattr(defaults, "_announced", set())
    cfg = gcnet_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_gcnet_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 18, 64
    renamed = dict(STAGES=["res4"], RATIO=1 / 4, POOLING_TYPE="avg", FUSION_TYPES=["channel_mul"])
    renamed.update(TRANSFORM="bottleneck", POSITION="afterAdd", EXTRA_BLOCK="snl", EXTRA_BLOCK_STAGE="res3")
    cfg.merge_from_list([item for key, value in renamed.items() for item in (f"MODEL.GCNET.{key}", str(value))])
    with pytest.warns(FutureWarning) as warned:
        backbone = build_backbone(cfg)
        build_backbone(cfg)
    block = backbone.res4[0].context_block
    assert (block.planes, block.pooling_type, block.transform) == (64, "avg", "bottleneck")
    assert block.fusion_types == ("channel_mul",)
    assert backbone.res4[0].context_position == "afterAdd" and backbone.res3[0].context_block is None
    assert type(backbone.res3[0].extra_context).__name__ == "SimplifiedNonLocalBlock"
    new_names = [
        "CONTEXT_STAGES",
        "GC_RATIO",
        "GC_POOLING_TYPE",
        "GC_FUSION_TYPES",
        "GC_TRANSFORM",
        "CONTEXT_POSITION",
        "EXTRA_CONTEXT",
        "EXTRA_CONTEXT_STAGE",
    ]
    assert [str(w.message) for w in warned if w.category is FutureWarning] == [
        f"MODEL.GCNET.{old} is deprecated; use MODEL.GCNET.{new}" for old, new in zip(renamed, new_names)
    ]


@pytest.mark.parametrize("depth", [18, 34])
def test_basic_block_depths(depth):
    cfg = gcnet_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_gcnet_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4", "res5"]
    backbone = build_backbone(cfg)
    assert backbone.output_shape()["res5"].channels == 512
    assert backbone.res5[1].context_block.in_channels == 512


YAML_CONFIG = CONFIGS / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_gc_r16_1x.yaml"


def test_yaml_config_builds_the_lazy_config_model():
    """The shipped YAML is the model of its LazyConfig: the same parameters, buffers and
    checkpoint names."""
    cfg = get_cfg()
    add_gcnet_config(cfg)
    cfg.merge_from_file(str(YAML_CONFIG))
    cfg.MODEL.DEVICE = "cpu"
    yacs_model = build_model(cfg)
    lazy_model = instantiate(LazyConfig.load(str(YAML_CONFIG.with_suffix(".py"))).model)
    expected = {k: tuple(v.shape) for k, v in lazy_model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in yacs_model.state_dict().items()} == expected
    assert len([m for m in yacs_model.modules() if isinstance(m, ContextBlock)]) == 4 + 6 + 3
    assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.WEIGHTS.startswith("detectron2://ImageNetPretrained/torchvision/")


TRAIN_WITH_DEFAULT_TRAINER = """
import json, sys
from detectron2.config import get_cfg
from detectron2.engine import DefaultTrainer
from detectron2.utils.env import seed_all_rng
import gcnet.data  # registers balloon_train
from gcnet.layers import ContextBlock
from gcnet.modeling import GCBottleneckBlock, add_gcnet_config

cfg = get_cfg()
add_gcnet_config(cfg)
cfg.merge_from_file(sys.argv[1])
cfg.merge_from_list(sys.argv[2:])
seed_all_rng(cfg.SEED)
trainer = DefaultTrainer(cfg)
trainer.resume_or_load(resume=False)
trainer.train()
modules = list(trainer.model.backbone.bottom_up.modules())
print(json.dumps({
    "gc_blocks": sum(isinstance(m, ContextBlock) for m in modules),
    "gc_bottlenecks": sum(isinstance(m, GCBottleneckBlock) for m in modules),
}))
"""


def test_yaml_config_trains_with_detectron2_default_trainer(datasets_root, tmp_path):
    """yacs users: detectron2's own DefaultTrainer trains the YAML config's model, with the
    registered GC-ResNet-FPN backbone, on the balloon images (small inputs, no initial weights)."""
    out = tmp_path / "out"
    overrides = {
        "MODEL.WEIGHTS": "",
        "MODEL.DEVICE": "cpu",
        "MODEL.ROI_HEADS.NUM_CLASSES": "1",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": "64",
        "DATASETS.TRAIN": "('balloon_train',)",
        "DATASETS.TEST": "()",
        "INPUT.MIN_SIZE_TRAIN": "(128,)",
        "INPUT.MAX_SIZE_TRAIN": "192",
        "SOLVER.IMS_PER_BATCH": "2",
        "SOLVER.BASE_LR": "0.001",
        "SOLVER.MAX_ITER": "3",
        "SEED": "0",
        "DATALOADER.NUM_WORKERS": "0",
        "OUTPUT_DIR": str(out),
    }
    arguments = [str(YAML_CONFIG)] + [item for pair in overrides.items() for item in pair]
    env = {"DETECTRON2_DATASETS": str(datasets_root)}
    result = run_tool("-c", TRAIN_WITH_DEFAULT_TRAINER, *arguments, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"gc_blocks": 13, "gc_bottlenecks": 16}
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert metrics[-1]["iteration"] == 2 and math.isfinite(metrics[-1]["total_loss"])
    assert (out / "model_final.pth").is_file()
