"""``model_zoo/MODEL_ZOO.md``, generated from the manifest alone."""

import re
from typing import Dict, List, Mapping, Tuple

from .manifest import CheckpointSource, Manifest, UpstreamRule, ZooModel

__all__ = ["model_zoo_markdown"]

# The sections of the page: title, evaluation dataset, metric columns.
SECTIONS = (
    ("COCO instance segmentation (val2017)", "coco_2017_val", ["box AP", "mask AP"]),
    ("Cityscapes semantic segmentation (val)", "cityscapes_fine_sem_seg_val", ["mIoU", "mIoU (ms+flip)"]),
    ("ADE20K semantic segmentation (val)", "ade20k_sem_seg_val", ["mIoU", "mIoU (ms+flip)"]),
    ("Pascal VOC 2012 + aug semantic segmentation (val)", "voc_2012_sem_seg_val", ["mIoU", "mIoU (ms+flip)"]),
)


METRIC_OVERRIDES_TITLE = (
    "Metrics evaluated with more overrides (`gcnet.model_zoo.get_config(name, metric=...)` adds them):"
)


def _schedule(model: ZooModel) -> str:
    match = re.search(r"_(\d+x|\d+k)(?:_|$)", model.name)
    return match.group(1) if match else "-"


def _number(value) -> str:
    return "-" if value is None else str(value)


def _metric(model: ZooModel, key: str) -> str:
    entry = model.metrics.get(key)
    return "-" if entry is None else _number(entry["value"])


def _digest(source: CheckpointSource) -> str:
    """The sha256 a download is checked against: pinned in full, or the prefix in the file name."""
    if source.sha256:
        return f"`{source.sha256}`"
    return f"`{source.file_digest}...` (file name)" if source.file_digest else "none published"


def _links(keys) -> str:
    return ", ".join(f"[{k}](#{k})" for k in keys)


def _test_rules(model: ZooModel, rules: Mapping[str, UpstreamRule]) -> str:
    """The upstream test-time rules of ``model``: those reproduced, then those that are not."""
    reproduced = [k for k in model.test_rules if rules[k].reproduced]
    differs = [k for k in model.test_rules if not rules[k].reproduced]
    parts = [f"{label}: {_links(keys)}" for label, keys in (("reproduced", reproduced), ("not", differs)) if keys]
    return "<br>".join(parts) or "-"


def _row(model: ZooModel, columns: List[str], rules: Mapping[str, UpstreamRule]) -> str:
    provenance = "; ".join(sorted({m["source"] for m in model.metrics.values()}))
    cells = [
        f"[{model.name}](../{model.config})",
        _schedule(model),
        _number(model.published.get("train_memory_gb")),
        *(_metric(model, c) for c in columns),
        provenance,
        _test_rules(model, rules),
        _links(model.notes) or "-",
        f"[model]({model.url}) {_digest(model)}",
    ]
    return "| " + " | ".join(cells) + " |"


def _table(models: List[ZooModel], columns: List[str], rules: Mapping[str, UpstreamRule]) -> List[str]:
    header = ["name (config)", "schedule", "train mem (GB)", *columns, "provenance"]
    header += ["upstream test-time rules", "notes", "download (sha256)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + [_row(m, columns, rules) for m in models]


def _overrides(models: List[ZooModel]) -> List[str]:
    """One line per set of config overrides, with the models that use it."""
    groups: Dict[Tuple[str, ...], List[str]] = {}
    for m in models:
        if m.config_overrides:
            groups.setdefault(m.config_overrides, []).append(m.name)
    return [f"* `{' '.join(overrides)}`: {', '.join(f'`{n}`' for n in names)}" for overrides, names in groups.items()]


def _metric_overrides(models: List[ZooModel]) -> List[str]:
    """One line per metric and set of overrides it is evaluated with beyond the config's, with
    the models that use it."""
    groups: Dict[Tuple[str, Tuple[str, ...]], List[str]] = {}
    for m in models:
        for metric in m.metrics:
            if m.metric_overrides(metric):
                groups.setdefault((metric, m.metric_overrides(metric)), []).append(m.name)
    return [
        f"* {metric}: `{' '.join(overrides)}`: {', '.join(f'`{n}`' for n in names)}"
        for (metric, overrides), names in groups.items()
    ]


def _dataset_tables(manifest: Manifest, dataset: str, columns: List[str]) -> List[str]:
    """A table per upstream repository (in the manifest's ``repositories`` order) of the models
    evaluated on ``dataset``; a model whose repository the manifest does not list raises a
    ValueError."""
    models = [m for m in manifest.models.values() if m.dataset == dataset]
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
            out += _table(group, columns, manifest.test_rules) + [""]
            overrides = _overrides(group)
            if overrides:
                out += ["Configs used with overrides (`gcnet.model_zoo.get_config` applies them):", "", *overrides, ""]
            metric_overrides = _metric_overrides(group)
            if metric_overrides:
                out += [METRIC_OVERRIDES_TITLE, "", *metric_overrides, ""]
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
        "checkpoint once over https, checks it against the sha256 digits in its file name, records",
        "its full sha256 (checked on every use), and converts it to the gcnet model of the linked",
        "config: every upstream weight, nothing missing or left over (`python -m gcnet.model_zoo verify",
        "NAME` checks it). Offline, `python -m gcnet.model_zoo download NAME --file FILE` takes a",
        'copy of the upstream file made on another machine. The column "upstream test-time rules"',
        "says, per model, which rules of the upstream inference the config reproduces and which it",
        'does not ([all rules](#upstream-test-time-rules)), so that "reproduces upstream" has a',
        "precise meaning.",
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
        'Metrics are those published upstream ("reported by ..."), on the datasets named below;',
        "memory is the training memory per GPU that upstream reports.",
        "",
        "## Evaluate a zoo model yourself",
        "",
        "```bash",
        "python tools/train_net.py --config-file <config> --eval-only train.init_checkpoint=gcnet://<name> \\",
        "    [--num-gpus 8]",
        "```",
        "",
        "(add the `config_overrides` that `python -m gcnet.model_zoo show <name>` lists, if any, and those of",
        "the metric, such as ms+flip, if it has its own).",
        "",
    ]
    unplaced = sorted(m.name for m in manifest.models.values() if m.dataset not in {d for _, d, _ in SECTIONS})
    if unplaced:
        raise ValueError(f"Cannot place {unplaced} in MODEL_ZOO.md: no section of the page holds their dataset")
    for title, dataset, columns in SECTIONS:
        out += [f"## {title}", ""] + _dataset_tables(manifest, dataset, columns)
    out += ["## ImageNet backbones", "", "| name | upstream file | sha256 | description |", "|---|---|---|---|"]
    for source in manifest.imagenet.values():
        out.append(f"| `gcnet://{source.name}` | {source.url} | {_digest(source)} | {source.description} |")
    out += ["", "## Upstream test-time rules", ""]
    for key, rule in manifest.test_rules.items():
        out += [f"### {key}", "", f"**{'Reproduced' if rule.reproduced else 'Not reproduced'}.** {rule.text}", ""]
    out += ["## Notes", ""]
    for key, text in manifest.notes.items():
        out += [f"### {key}", "", text, ""]
    return "\n".join(out).rstrip() + "\n"
