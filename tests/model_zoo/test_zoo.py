"""The model zoo: manifest contents, configs, MODEL_ZOO.md, the API and CLI end to end against a
loopback server, and safe loading."""

import dataclasses
import hashlib
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import ListConfig

import detectron2.data.transforms as T
from detectron2.config import LazyConfig, instantiate
from detectron2.evaluation import SemSegEvaluator
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.utils.file_io import PathManager

import gcnet.model_zoo as zoo
from gcnet.data import OpenCVResizeShortestEdge
from gcnet.engine import GCNetCheckpointer
from gcnet.evaluation import MMSegSemSegEvaluator
from gcnet.model_zoo import manifest as manifest_module
from gcnet.model_zoo.handler import GCNetHandler
from gcnet.model_zoo.manifest import default_manifest, load_manifest
from gcnet.model_zoo.markdown import model_zoo_markdown
from gcnet.modeling import mmdet

from ..helpers import REPO_ROOT, run_tool, serve_directory
from .upstream_layouts import mmdet_checkpoint

MANIFEST = default_manifest()


def test_manifest_rows():
    names = set(MANIFEST.models)
    mmdet_gcnet = {
        n
        for n, m in MANIFEST.models.items()
        if m.upstream["config"].startswith("configs/gcnet/") and n.startswith("mmdet/")
    }
    assert len(mmdet_gcnet) == 19
    assert {"mmdet/mask_rcnn_r50_fpn_1x_coco", "mmdet/mask_rcnn_r101_fpn_1x_coco"} <= names  # baselines
    assert len([n for n in names if n.startswith("gcnet-v1/")]) == 19
    semantic = {n: m for n, m in MANIFEST.models.items() if m.task == "semantic_segmentation"}
    assert all(n.startswith("mmseg/gcnet_r") for n in semantic)
    assert Counter(m.dataset for m in semantic.values()) == {
        "cityscapes_fine_sem_seg_val": 8,
        "ade20k_sem_seg_val": 4,
        "voc_2012_sem_seg_val": 4,
    }
    entry = MANIFEST.model("mmdet/cascade_mask_rcnn_x101_32x4d_fpn_syncbn-backbone_dconv_c3-c5_r16_gcb_c3-c5_1x_coco")
    assert entry.metrics["box AP"] == {"value": 48.0, "source": "reported by mmdetection"}
    assert entry.metrics["mask AP"]["value"] == 41.3 and (entry.sha256, entry.file_digest) == ("", "44aa598a")
    assert MANIFEST.model("mmseg/gcnet_r101-d8_769x769_40k_cityscapes").metrics["mIoU (ms+flip)"]["value"] == 80.71
    ade20k = MANIFEST.model("mmseg/gcnet_r101-d8_512x512_160k_ade20k")
    mious = (ade20k.metrics["mIoU"]["value"], ade20k.metrics["mIoU (ms+flip)"]["value"])
    assert (mious, ade20k.file_digest) == ((43.69, 45.21), "615528d7")
    voc = MANIFEST.model("mmseg/gcnet_r50-d8_512x512_20k_voc12aug")
    assert (voc.metrics["mIoU"]["value"], voc.published["train_memory_gb"], voc.file_digest) == (76.42, 5.8, "3cbfdab1")
    assert voc.config == "configs/PascalVOC-SemanticSegmentation/mmseg_gcnet_R_50_D8_512x512_20k.py"


@pytest.mark.parametrize("name", sorted(MANIFEST.sources()))
def test_every_entry_is_consistent(name):
    source = MANIFEST.sources()[name]
    assert source.url.startswith("https://") and source.converter in zoo.CONVERTERS, source
    assert source.sha256 == "" or re.fullmatch("[0-9a-f]{64}", source.sha256), source
    if source.file_digest:  # OpenMMLab and torchvision name files <stem>-<sha256 prefix>.pth
        assert re.search(rf"-{source.file_digest}\.pth$", source.url) and len(source.file_digest) == 8, source.url
        assert source.expected_sha256 == source.sha256 or source.file_digest
    if name in MANIFEST.models:
        model = MANIFEST.models[name]
        assert (REPO_ROOT / model.config).is_file()
        assert all(m["source"].startswith(("reported by ", "evaluated with gcnet on ")) for m in model.metrics.values())
        assert model.test_rules and all(MANIFEST.test_rules[r].reproduced for r in model.test_rules)


def test_every_upstream_rule_reproduced():
    """MODEL_ZOO.md has no rule left "Not reproduced"."""
    assert [k for k, rule in MANIFEST.test_rules.items() if not rule.reproduced] == []
    assert "Not reproduced" not in model_zoo_markdown(MANIFEST)


def box_parts(model):
    """The RPN's box coder and each box predictor with its coder."""
    predictors = model.roi_heads.box_predictor
    predictors = list(predictors) if isinstance(predictors, torch.nn.ModuleList) else [predictors]
    return model.proposal_generator.box2box_transform, predictors


def box_coders(model):
    rpn_coder, predictors = box_parts(model)
    return [rpn_coder] + [p.box2box_transform for p in predictors]


def mmdet_v1_boxes(cfg, model) -> bool:
    parts = [model, model.proposal_generator, model.proposal_generator.anchor_generator, *box_coders(model)]
    parts += [*box_parts(model)[1], model.roi_heads.box_pooler, model.roi_heads.mask_pooler]
    return all(type(p).__name__.startswith("MMDetV1") and type(p) is getattr(mmdet, type(p).__name__) for p in parts)


def mmdet_detections(cfg, model) -> bool:
    poolers = (model.roi_heads.box_pooler, model.roi_heads.mask_pooler)
    return isinstance(model, mmdet.MMDetRCNN) and all(isinstance(p, mmdet.MMDetROIPooler) for p in poolers)


def v1_roi_align(cfg, model) -> bool:
    poolers = model.roi_heads.box_pooler.level_poolers
    return {(p.sampling_ratio, p.aligned) for p in poolers} == {(2, False)}


def resizes_as(cfg, short: int, longer: int) -> bool:
    resizes = instantiate(cfg.dataloader.test.mapper.augmentations)
    found = [(type(r), r.short_edge_length[0], r.max_size) for r in resizes]
    return found == [(OpenCVResizeShortestEdge, short, longer)]


def evaluators(cfg):
    evaluator = cfg.dataloader.evaluator
    return [e._target_ for e in (evaluator if isinstance(evaluator, ListConfig) else [evaluator])]


CASCADE_WEIGHTS = (1 / 0.033, 1 / 0.033, 1 / 0.067, 1 / 0.067)
# What an instantiated zoo config (its model and dataloader) does for each upstream rule it lists.
RULE_CHECKS = {
    "mmdet_detections": mmdet_detections,
    "mmdet_box_coder": lambda cfg, m: [c.weights for c in box_coders(m)[:2]] == [(1, 1, 1, 1), (10, 10, 5, 5)],
    "cascade_box_coders": lambda cfg, m: box_coders(m)[3].weights == pytest.approx(CASCADE_WEIGHTS),
    "cascade_scores": lambda cfg, m: m.roi_heads.score_fusion == "mean_logits",
    "cascade_masks": lambda cfg, m: len(m.roi_heads.mask_head) == 3,
    "mmdet_v1_roi_align": v1_roi_align,
    "mmseg_logits_resize": lambda cfg, m: m.output_resize == "logits",
    "mmseg_slide": lambda cfg, m: (m.mode, m.crop_size, m.stride) == ("slide", (769, 769), (513, 513)),
    "mmdet_resize": lambda cfg, m: resizes_as(cfg, 800, 1333),
    "box_delta_clamp": lambda cfg, m: all(isinstance(c, mmdet.MMDetBox2BoxTransform) for c in box_coders(m)),
    "mmdet_v1_boxes": mmdet_v1_boxes,
    "mmseg_resize": lambda cfg, m: any(
        resizes_as(cfg, short, long) for short, long in [(1025, 2049), (1024, 2048), (512, 2048)]
    ),
    "mmseg_tta_scales": lambda cfg, m: cfg.dataloader.test.mapper.test_ratios is None,  # ms+flip: test_mmseg_rules.py
    "sem_seg_miou": lambda cfg, m: MMSegSemSegEvaluator in evaluators(cfg),
}
CONFIG_VARIANTS = sorted({(m.config, m.config_overrides) for m in MANIFEST.models.values()})


@pytest.mark.parametrize(
    "config,overrides", CONFIG_VARIANTS, ids=[f"{Path(c).stem}{'+overrides' if o else ''}" for c, o in CONFIG_VARIANTS]
)
def test_every_entry_config_follows_its_rules(config, overrides):
    """Each entry's config (with its overrides) instantiates and does what each of its upstream
    test-time rules says; every rule of the manifest has its check."""
    assert set(RULE_CHECKS) == set(MANIFEST.test_rules)
    names = [n for n, m in MANIFEST.models.items() if (m.config, m.config_overrides) == (config, overrides)]
    cfg = zoo.get_config(names[0], trained=True)
    assert cfg.train.init_checkpoint == f"gcnet://{names[0]}"
    model = instantiate(cfg.model)
    for name in names:
        failed = [r for r in MANIFEST.model(name).test_rules if not RULE_CHECKS[r](cfg, model)]
        assert not failed, f"{name} does not follow {failed}"


@pytest.mark.parametrize(
    "config",
    [
        "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py",
        "configs/COCO-InstanceSegmentation/cascade_mask_rcnn_X_101_32x4d_FPN_syncbn_gc_r16_1x.py",
        "configs/Cityscapes-SemanticSegmentation/gc_head_R_101_D8_769x769_60k.py",
    ],
)
def test_own_configs_keep_detectron2s_rules(config):
    """The configs a zoo entry overrides are gcnet's own: without the overrides, detectron2's
    model, box coder, resize and evaluator."""
    cfg = LazyConfig.load(str(REPO_ROOT / config))
    resizes = instantiate(cfg.dataloader.test.mapper.augmentations)
    assert all(type(a) in (T.ResizeShortestEdge, T.Resize) for a in resizes)
    if "COCO" in config:
        assert cfg.model._target_ is GeneralizedRCNN
        assert cfg.model.proposal_generator.box2box_transform._target_ is Box2BoxTransform
    else:
        assert evaluators(cfg)[0] is SemSegEvaluator and cfg.model.inference.output_resize == "probabilities"


MINIMAL_ENTRY = dict(
    name="test/model",
    task="semantic_segmentation",
    dataset="ade20k_sem_seg_val",
    config="configs/x.py",
    upstream={},
    url="https://example.com/model-0123abcd.pth",
    converter="mmseg",
    metrics={},
)
FULL = "0123abcd" + "9" * 56


@pytest.mark.parametrize(
    "data,message",
    [
        (
            {"test_rules": {"r": {"reproduced": "yes", "text": "t"}}},
            "test rule 'r' must have reproduced (true or false) and text, got {'reproduced': 'yes', 'text': 't'}",
        ),
        (
            {"test_rules": {}, "models": [dict(MINIMAL_ENTRY, test_rules=["nope"])]},
            "entry 'test/model' refers to unknown test_rules ['nope']",
        ),
        (
            {
                "models": [
                    dict(MINIMAL_ENTRY, metrics={"mIoU": {"value": 1.0, "source": "s", "config_overrides": "a=1"}})
                ]
            },
            "entry 'test/model': config_overrides of metric 'mIoU' must be a list of key=value, got 'a=1'",
        ),
        (
            {"models": [dict(MINIMAL_ENTRY, metrics={"mIoU": 41.5})]},
            "entry 'test/model': metric 'mIoU' must have value and source, got 41.5",
        ),
        # Digests: full or none, quoted, agreeing with the file name; plain http only when pinned.
        (
            {"models": [dict(MINIMAL_ENTRY, sha256="0123abcd")]},
            "entry 'test/model': sha256 '0123abcd' is not a full sha256 (64 lower-case hex digits); give the full "
            "digest or none (the digits in an OpenMMLab or torchvision file name are checked from its URL)",
        ),
        (
            {"models": [dict(MINIMAL_ENTRY, sha256=12345678)]},
            "entry 'test/model': YAML read sha256 12345678 as int, not as text: quote it (sha256: '...')",
        ),
        (
            {"models": [dict(MINIMAL_ENTRY, sha256=1.5e9)]},
            "entry 'test/model': YAML read sha256 1500000000.0 as float, not as text: quote it (sha256: '...')",
        ),
        (
            {"models": [dict(MINIMAL_ENTRY, sha256="f" * 64)]},
            f"entry 'test/model': sha256 {'f' * 64} does not start with 0123abcd, as its file name",
        ),
        (
            {"imagenet_backbones": [dict(name="b", url="http://example.com/b.pth", converter="mmseg")]},
            "entry 'b' downloads http://example.com/b.pth without https and without a sha256: use https, or pin "
            "its sha256",
        ),
    ],
)
def test_manifest_test_rules_are_checked(data, message, tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError) as info:
        load_manifest(path)
    assert str(info.value) == f"{path}: {message}"


def test_manifest_digests_and_sources(tmp_path):
    """Every entry of the zoo is fetched over https; a pinned digest is full; plain http passes
    only with one; an unreadable manifest is one line from the command line."""
    assert not [s.url for s in MANIFEST.sources().values() if not s.url.startswith("https://")]
    pinned = dict(MINIMAL_ENTRY, url="http://example.com/model-0123abcd.pth", sha256=FULL)
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"models": [pinned]}))
    source = load_manifest(path).model("test/model")
    assert (source.sha256, source.file_digest, source.expected_sha256) == (FULL, "0123abcd", FULL)
    path.write_text("models:\n- name: test/model\n  sha256: 1234e5\n  url: [unclosed\n")
    result = run_tool("-m", "gcnet.model_zoo", "--manifest", path, "list")
    assert result.returncode == 2 and result.stdout == ""
    problem = "not valid YAML at line 5 (expected ',' or ']', but got '<stream end>')"
    assert result.stderr == f"gcnet.model_zoo: {path}: {problem}\n"


def test_model_zoo_markdown_is_current():
    assert (REPO_ROOT / "model_zoo" / "MODEL_ZOO.md").read_text() == model_zoo_markdown(MANIFEST), (
        "model_zoo/MODEL_ZOO.md is stale: python -m gcnet.model_zoo markdown --output model_zoo/MODEL_ZOO.md"
    )


def test_api_names_and_urls():
    assert len(zoo.list_models()) == 56 and len(zoo.list_models("semantic_segmentation")) == 16
    assert zoo.get_checkpoint_url("mmseg/gcnet_r50-d8_512x1024_40k_cityscapes").endswith("-4b0fd17b.pth")
    assert zoo.get_checkpoint_url("ImageNetPretrained/torchvision/R-101").endswith("resnet101-5d3b4d8f.pth")
    assert zoo.get_config("mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco").train.init_checkpoint.startswith(
        "detectron2://"
    )
    with pytest.raises(
        ValueError,
        match=r"Unknown model 'mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x'; closest: "
        r"mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco",
    ):
        zoo.get_config("mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x")


@pytest.fixture
def served_zoo(tmp_path):
    """A manifest with two models served on loopback: a complete mmdetection v2 checkpoint, and
    one whose GC blocks are missing."""
    served = tmp_path / "served"
    served.mkdir()
    checkpoint = mmdet_checkpoint("v2", 50, gc_ratio=1 / 16, seed=11)
    broken = {"state_dict": {k: v for k, v in checkpoint["state_dict"].items() if ".context_block." not in k}}
    entries = []
    with serve_directory(served) as (url, requests):
        for name, ckpt in [("test/mask_rcnn_gc", checkpoint), ("test/mask_rcnn_gc_broken", broken)]:
            path = served / "tmp.pth"
            torch.save(ckpt, path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            path.rename(served / f"{name.split('/')[1]}-{digest[:8]}.pth")
            entries.append(
                dict(
                    name=name,
                    task="instance_segmentation",
                    dataset="coco_2017_val",
                    config="configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py",
                    upstream=dict(repository="test", config="test.py", release="test"),
                    url=f"{url}/{name.split('/')[1]}-{digest[:8]}.pth",
                    sha256=digest,
                    converter="mmdet",
                    metrics={"box AP": {"value": 0.0, "source": "reported by test"}},
                )
            )
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(yaml.safe_dump({"notes": {}, "imagenet_backbones": [], "models": entries}))
        yield manifest, requests, checkpoint


def test_cli_download_and_verify(served_zoo, tmp_path):
    manifest, requests, _ = served_zoo
    env = {"FVCORE_CACHE": str(tmp_path / "cache")}
    result = run_tool("-m", "gcnet.model_zoo", "--manifest", manifest, "verify", "test/mask_rcnn_gc", env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"test/mask_rcnn_gc: sha256 [0-9a-f]{64} verified; its (\d+) converted keys fill the \1 parameters and buffers "
        r"of configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x\.py exactly",
        result.stdout,
    ), result.stdout
    again = run_tool("-m", "gcnet.model_zoo", "--manifest", manifest, "download", "test/mask_rcnn_gc", env=env)
    assert again.returncode == 0 and "converted: " in again.stdout
    assert requests == ["/" + Path(load_manifest(manifest).model("test/mask_rcnn_gc").url).name]  # cache hit

    broken = run_tool("-m", "gcnet.model_zoo", "--manifest", manifest, "verify", "test/mask_rcnn_gc_broken", env=env)
    assert broken.returncode == 1
    assert "missing backbone.bottom_up.res3.0.context_block.conv_mask.weight" in broken.stderr

    unknown = run_tool("-m", "gcnet.model_zoo", "--manifest", manifest, "show", "test/mask_rcnn", env=env)
    assert unknown.returncode == 2 and "closest: test/mask_rcnn_gc" in unknown.stderr


def test_get_loads_the_converted_checkpoint(served_zoo, tmp_path, monkeypatch):
    manifest_path, _, checkpoint = served_zoo
    manifest = load_manifest(manifest_path)
    monkeypatch.setattr(manifest_module, "default_manifest", lambda: manifest)
    monkeypatch.setattr(zoo.api, "default_manifest", lambda: manifest)
    monkeypatch.setitem(
        PathManager._path_handlers, "gcnet://", GCNetHandler(manifest.sources(), str(tmp_path / "cache"))
    )
    model = zoo.get("test/mask_rcnn_gc", trained=True, device="cpu")
    upstream = checkpoint["state_dict"]
    torch.testing.assert_close(model.roi_heads.box_head.fc2.weight, upstream["roi_head.bbox_head.shared_fcs.1.weight"])
    torch.testing.assert_close(
        model.backbone.bottom_up.res5[2].context_block.conv_mask.weight,
        upstream["backbone.layer4.2.context_block.conv_mask.weight"],
    )


def test_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / "model_final.pth"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"Cannot load checkpoint {path}: it is truncated or corrupt"):
        GCNetCheckpointer(torch.nn.Linear(2, 2)).load(str(path))


class Payload:
    """A pickled object, as an untrusted file could hold."""


def test_upstream_files_load_weights_only(tmp_path):
    path = tmp_path / "upstream.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Payload()}, path)
    with pytest.raises(ValueError, match=rf"Cannot load checkpoint {path}"):
        zoo.load_upstream_checkpoint(str(path))


def test_markdown_refuses_a_model_it_cannot_place():
    """MODEL_ZOO.md comes from the manifest alone: a model from a repository the manifest does
    not list stops the page instead of leaving the model out."""
    entry = MANIFEST.model("mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco")
    stray = dataclasses.replace(entry, name="other/model", upstream=dict(entry.upstream, repository="someone/else"))
    manifest = dataclasses.replace(MANIFEST, models={**MANIFEST.models, stray.name: stray})
    with pytest.raises(ValueError) as info:
        model_zoo_markdown(manifest)
    assert str(info.value).startswith("Cannot place ['other/model'] in MODEL_ZOO.md: their upstream repository is not")
    assert "open-mmlab/mmdetection, xvjiarui/GCNet, open-mmlab/mmsegmentation" in str(info.value)
