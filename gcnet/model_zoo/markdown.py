"""``model_zoo/MODEL_ZOO.md``, generated from the manifest alone."""
import re
from typing import List

from .manifest import Manifest, ZooModel

__all__ = ["model_zoo_markdown"]

# The sections of the page: title, task, metric columns.
SECTIONS = (
    ("COCO instance segmentation (val2017)", "instance_segmentation", ["box AP", "mask AP"]),
    ("Cityscapes semantic segmentation (val)", "semantic_segmentation", ["mIoU", "mIoU (ms+flip)"]),
)


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


def _task_tables(manifest: Manifest, task: str, columns: List[str]) -> List[str]:
    """A table per upstream repository (in the manifest's ``repositories`` order) of the models
    of ``task``; a model whose repository the manifest does not list raises a ValueError."""
    models = [m for m in manifest.models.values() if m.task == task]
    unplaced = [m.name for m in models if m.upstream.get("repository") not in manifest.repositories]
    if unplaced:
        raise ValueError(
            f"Cannot place {unplaced} in MODEL_ZOO.md: their upstream repository is not under the "
            f"manifest's repositories ({', '.join(manifest.repositories) or 'none'})"
        )
    out = []
    for repository, info in manifest.repositories.items():
        group = [m for m in models if m.upstream["repository"] == repository]
        if group:
            out += [f"### {repository} ({group[0].upstream['release']}; trained on {info['hardware']})", ""]
            out += _table(group, columns) + [""]
            overrides = sorted({o for m in group for o in m.config_overrides})
            if overrides:
                out += [f"Their configs are used with the overrides `{' '.join(overrides)}`.", ""]
    return out


def model_zoo_markdown(manifest: Manifest) -> str:
    """The text of ``model_zoo/MODEL_ZOO.md``."""
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
    unplaced = sorted(m.name for m in manifest.models.values() if m.task not in {task for _, task, _ in SECTIONS})
    if unplaced:
        raise ValueError(f"Cannot place {unplaced} in MODEL_ZOO.md: no section of the page holds their task")
    for title, task, columns in SECTIONS:
        out += [f"## {title}", ""] + _task_tables(manifest, task, columns)
    out += ["## ImageNet backbones", "", "| name | upstream file | sha256 | description |", "|---|---|---|---|"]
    for source in manifest.imagenet.values():
        out.append(f"| `gcnet://{source.name}` | {source.url} | `{source.sha256 or 'none published'}` | {source.description} |")
    out += ["", "## Notes", ""]
    for key, text in manifest.notes.items():
        out += [f"### {key}", "", text, ""]
    return "\n".join(out).rstrip() + "\n"
