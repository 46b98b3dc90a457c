"""``python -m gcnet.model_zoo verify`` on the zoo's ADE20K and VOC entries, their upstream
checkpoints synthesised in mmsegmentation's layout, written as the releases were (legacy format
with mmcv's meta and optimizer; zip with mmengine's message_hub) and served on loopback: an
exact fit is reported with the entry's upstream test-time rules, a misfit by its keys."""

import dataclasses
import hashlib

import torch
import yaml

from gcnet.model_zoo.manifest import default_manifest

from ..helpers import run_tool, serve_directory
from .test_checkpoint_formats import mmcv_checkpoint, mmengine_checkpoint
from .upstream_layouts import mmseg_checkpoint

MANIFEST = default_manifest()
ADE20K = "mmseg/gcnet_r50-d8_512x512_80k_ade20k"
VOC = "mmseg/gcnet_r50-d8_512x512_20k_voc12aug"


def release_file(folder, stem, num_classes, writer, zip_format):
    """An mmsegmentation GCNet R-50-D8 checkpoint in a release's file format; its name ends
    with its sha256 prefix, as OpenMMLab names them. Returns (path, full sha256, number of
    weights)."""
    checkpoint = {**writer(), "state_dict": mmseg_checkpoint(50, num_classes=num_classes)["state_dict"]}
    path = folder / "tmp.pth"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    weights = [k for k in checkpoint["state_dict"] if not k.endswith(".num_batches_tracked")]
    return path.rename(folder / f"{stem}-{digest[:8]}.pth"), digest, len(weights)


def entry_served_as(name, new_name, url, sha256):
    entry = dataclasses.asdict(MANIFEST.model(name))
    entry = {k: list(v) if isinstance(v, tuple) else v for k, v in entry.items()}
    return {**entry, "name": new_name, "url": url, "sha256": sha256, "description": ""}


def test_verify_reports_exact_fits_and_test_rules(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    files = [
        (ADE20K, "test/ade20k", 150, mmcv_checkpoint, False),
        (VOC, "test/voc", 21, mmengine_checkpoint, True),
        (ADE20K, "test/ade20k_with_voc_weights", 21, mmcv_checkpoint, False),
    ]
    with serve_directory(served) as (url, _):
        entries, num_weights = [], []
        for name, test_name, num_classes, writer, zip_format in files:
            path, digest, count = release_file(served, test_name.split("/")[1], num_classes, writer, zip_format)
            entries.append(entry_served_as(name, test_name, f"{url}/{path.name}", digest))
            num_weights.append(count)
        rules = {k: dataclasses.asdict(v) for k, v in MANIFEST.test_rules.items()}
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(yaml.safe_dump({"test_rules": rules, "notes": dict(MANIFEST.notes), "models": entries}))
        names = [e["name"] for e in entries]
        result = run_tool(
            "-m",
            "gcnet.model_zoo",
            "--manifest",
            manifest,
            "verify",
            *names,
            env={"FVCORE_CACHE": str(tmp_path / "cache")},
        )
    assert result.returncode == 1, result.stderr
    for entry, count in zip(entries[:2], num_weights):
        config = entry["config"]
        fit = (
            f"{entry['name']}: sha256 {entry['sha256']} verified; its {count} converted keys fill the {count} "
            f"parameters and buffers of {config} exactly"
        )
        assert fit + " (none missing, none left over, every shape equal)" in result.stdout, result.stdout
    assert (
        "  upstream test-time rules reproduced: mmseg_logits_resize, mmseg_resize, mmseg_tta_scales, sem_seg_miou\n"
        "  upstream test-time rules not reproduced: none\n"
    ) in result.stdout
    assert "test/ade20k_with_voc_weights" not in result.stdout
    assert result.stderr.strip().endswith(
        f"gcnet.model_zoo: test/ade20k_with_voc_weights does not fit {MANIFEST.model(ADE20K).config}: "
        "shape of sem_seg_head.predictor.weight: (21, 512, 1, 1) in the checkpoint, (150, 512, 1, 1) in the model; "
        "shape of sem_seg_head.predictor.bias: (21,) in the checkpoint, (150,) in the model; "
        "shape of auxiliary_head.predictor.weight: (21, 256, 1, 1) in the checkpoint, (150, 256, 1, 1) in the model; "
        "shape of auxiliary_head.predictor.bias: (21,) in the checkpoint, (150,) in the model"
    ), result.stderr[-2000:]
