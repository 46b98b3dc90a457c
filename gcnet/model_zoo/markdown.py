"""``model_zoo/MODEL_ZOO.md``, generated from the manifest."""
import re
from typing import List

from .manifest import Manifest, ZooModel

__all__ = ["model_zoo_markdown"]

_HARDWARE = {
    "open-mmlab/mmdetection": "8 V100 GPUs, 2 images per GPU",
    "xvjiarui/GCNet": "8 V100 GPUs, 2 images per GPU (some models 4 GPUs x 4 images)",
    "open-mmlab/mmsegmentation": "4 GPUs, 2 images per GPU",
}


def _schedule(model: ZooModel) -> str:
    match = re.search(r"_(\d+x|\d+k)(?:_|$)", model.name)
    return match.group(1) if match else "-"


def _number(value) -> str:
    return "-" if value is None else str(value)


def _metric(model: ZooModel, key: str) -> str:
    entry = model.metrics.get(key)
    return "-" if entry is None else _number(entry["value"])


def _row(model: ZooModel, columns: List[str]) -> str:
    provenance = "; ".join(sorted({m["source"] for m in model.metrics.values()}))
    notes = ", ".join(f"[{n}](#{n})" for n in model.notes)
    cells = [
        f"[{model.name}](../{model.config})",
        _schedule(model),
        _number(model.published.get("train_memory_gb")),
        *(_metric(model, c) for c in columns),
        provenance,
        notes or "-",
        f"[model]({model.url}) `{model.sha256}`",
    ]
    return "| " + " | ".join(cells) + " |"


def _table(models: List[ZooModel], columns: List[str]) -> List[str]:
    header = ["name (config)", "schedule", "train mem (GB)", *columns, "provenance", "notes", "download (sha256)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + [_row(m, columns) for m in models]


def model_zoo_markdown(manifest: Manifest) -> str:
    """The text of ``model_zoo/MODEL_ZOO.md``."""
    models = list(manifest.models.values())
    out = [
        "# GCNet Model Zoo",
        "",
        "<!-- Generated from model_zoo/manifest.yaml by `python -m gcnet.model_zoo markdown`; do not edit. -->",
        "",
        "Trained GCNet models of the public releases (mmdetection, mmsegmentation and the original",
        "GCNet repository), served through detectron2: `gcnet://<name>` downloads the upstream",
        "checkpoint once, checks its sha256, and converts it to the gcnet model of the linked",
        "config, which reproduces the upstream model at test time (see the notes for what differs).",
        "",
        "```python",
        "import gcnet.model_zoo",
        "",
        'model = gcnet.model_zoo.get("mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco", trained=True)',
        "```",
        "",
        "or, in any config: `train.init_checkpoint=gcnet://<name>`. `python -m gcnet.model_zoo list`,",
        "`show NAME`, `download NAME` and `verify NAME` work from the command line.",
        "",
        "Metrics are those published upstream (\"reported by ...\"), on the datasets named below;",
        "memory is the training memory per GPU that upstream reports.",
        "",
        "## Evaluate a zoo model yourself",
        "",
        "```bash",
        "python tools/train_net.py --config-file <config> --eval-only train.init_checkpoint=gcnet://<name> \\",
        "    [--num-gpus 8]",
        "```",
        "",
        "(add the `config_overrides` that `python -m gcnet.model_zoo show <name>` lists, if any).",
        "",
    ]
    sections = [
        ("COCO instance segmentation (val2017)", "instance_segmentation", ["box AP", "mask AP"]),
        ("Cityscapes semantic segmentation (val)", "semantic_segmentation", ["mIoU", "mIoU (ms+flip)"]),
    ]
    for title, task, columns in sections:
        out += [f"## {title}", ""]
        for repository, hardware in _HARDWARE.items():
            group = [m for m in models if m.task == task and m.upstream["repository"] == repository]
            if group:
                release = group[0].upstream["release"]
                out += [f"### {repository} ({release}; trained on {hardware})", ""]
                out += _table(group, columns) + [""]
                overrides = sorted({o for m in group for o in m.config_overrides})
                if overrides:
                    out += [f"Their configs are used with the overrides `{' '.join(overrides)}`.", ""]
    out += ["## ImageNet backbones", "", "| name | upstream file | sha256 | description |", "|---|---|---|---|"]
    for source in manifest.imagenet.values():
        out.append(f"| `gcnet://{source.name}` | {source.url} | `{source.sha256 or 'none published'}` | {source.description} |")
    out += ["", "## Notes", ""]
    for key, text in manifest.notes.items():
        out += [f"### {key}", "", text, ""]
    return "\n".join(out).rstrip() + "\n"
