"""Every config family runs where it is started: on a machine without CUDA, ``train.device``
is "cpu" and the predictor runs one evaluation step there; an explicit device still wins."""

import numpy as np
import pytest
import torch

from detectron2.config import LazyConfig

from gcnet.engine import Predictor, apply_overrides

from ..helpers import CONFIGS

# One config of each family: COCO (Cascade) Mask R-CNN, here with SyncBN and DCN (the quick
# start shares its train dict), the Cityscapes GC head, and the mmseg GCNet of ADE20K, VOC and
# Cityscapes.
FAMILIES = [
    "COCO-InstanceSegmentation/cascade_mask_rcnn_X_101_32x4d_FPN_syncbn_dcn_gc_r16_1x.py",
    "Cityscapes-SemanticSegmentation/gc_head_R_101_D8_gc_r4_769x769_60k.py",
    "ADE20K-SemanticSegmentation/mmseg_gcnet_R_50_D8_512x512_80k.py",
]
# No weights (no internet), a small image and few proposals: one evaluation step, not a benchmark
# (nor a measurement of the memory layout, tests/engine/test_inference.py's).
SMALL = ["train.init_checkpoint=", "dataloader.test.mapper.augmentations=[]", "train.inference.channels_last=False"]
FEW_PROPOSALS = ["model.proposal_generator.post_nms_topk=[2000,20]"]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("config", FAMILIES, ids=lambda c: c.split("/")[0])
def test_config_runs_on_a_machine_without_cuda(config, no_cuda):
    cfg = LazyConfig.load(str(CONFIGS / config))
    assert cfg.train.device == "cpu"
    cfg = apply_overrides(cfg, SMALL + (FEW_PROPOSALS if "proposal_generator" in cfg.model else []))
    predictor = Predictor(cfg)
    assert predictor.device == torch.device("cpu")
    assert {p.device.type for p in predictor.model.parameters()} == {"cpu"}
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    output = predictor(image)
    if "instances" in output:
        assert output["instances"].image_size == (64, 96)
    else:
        assert output["sem_seg"].shape[-2:] == (64, 96)


def test_an_explicit_device_wins(no_cuda):
    cfg = LazyConfig.load(str(CONFIGS / FAMILIES[0]))
    cfg = apply_overrides(cfg, ["train.device=cuda:1"])
    assert cfg.train.device == "cuda:1"
