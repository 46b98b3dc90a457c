"""python -m gcnet.model_zoo {list,show,download,verify,markdown} ..."""

import argparse
import sys

import torch
import yaml

from detectron2.config import instantiate

from gcnet.utils.download import sha256sum
from gcnet.utils.file_io import atomic_write

from .api import load_zoo_config
from .fit import checkpoint_mismatches
from .handler import GCNetHandler
from .manifest import default_manifest, load_manifest
from .markdown import model_zoo_markdown


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gcnet.model_zoo", description="gcnet's model zoo")
    parser.add_argument("--manifest", help="a manifest other than model_zoo/manifest.yaml")
    commands = parser.add_subparsers(dest="command", required=True)
    list_parser = commands.add_parser("list", help="list the zoo models")
    list_parser.add_argument("--task", choices=["instance_segmentation", "semantic_segmentation"])
    commands.add_parser("show", help="print a model's manifest entry").add_argument("name")
    download = commands.add_parser("download", help="download, verify and convert a checkpoint; print where it is")
    download.add_argument("name")
    download.add_argument(
        "--file", help="the upstream file, downloaded on another machine: checked and used instead of downloading"
    )
    verify = commands.add_parser(
        "verify", help="download and convert checkpoints, check that each fills the model of its config exactly"
    )
    verify.add_argument("name", nargs="+")
    markdown = commands.add_parser("markdown", help="print model_zoo/MODEL_ZOO.md")
    markdown.add_argument("--output", help="write to this file instead")
    args = parser.parse_args(argv)

    try:
        manifest = load_manifest(args.manifest) if args.manifest else default_manifest()
        if args.command == "list":
            for name, model in sorted(manifest.models.items()):
                if args.task in (None, model.task):
                    metrics = ", ".join(f"{k} {v['value']:g}" for k, v in model.metrics.items())
                    print(f"{name}  [{metrics}]")
        elif args.command == "show":
            model = manifest.model(args.name)
            print(
                yaml.safe_dump(
                    {"name": model.name, **{k: v for k, v in vars(model).items() if k != "name"}}, sort_keys=False
                )
            )
        elif args.command == "download":
            handler, path = GCNetHandler(manifest.sources()), GCNetHandler.PREFIX + args.name
            upstream = handler.import_upstream(path, args.file) if args.file else handler.download(path)
            print(f"upstream: {upstream} (sha256 {sha256sum(upstream)})")
            print(f"converted: {handler.converted_path(path)}")
        elif args.command == "verify":
            return max(_verify(name, manifest) for name in args.name)
        else:
            text = model_zoo_markdown(manifest)
            if args.output:
                atomic_write(args.output, lambda f: f.write(text.encode("utf-8")))
            else:
                print(text, end="")
    except (OSError, ValueError) as e:
        print(f"gcnet.model_zoo: {e}", file=sys.stderr)
        return 2
    return 0


def _digest_checked(source) -> str:
    if source.sha256:
        return f"sha256 {source.sha256} verified"
    if source.file_digest:
        return f"sha256 prefix {source.file_digest} of its file name verified"
    return "no sha256 published"


def _verify(name: str, manifest) -> int:
    """Exit status 0 when the converted checkpoint of ``name`` fills the model of its config
    exactly: every key of the model (BatchNorm step counters aside) is in the checkpoint with
    its shape, and no key of the checkpoint is left over. Prints the upstream test-time rules
    that the entry reproduces and those it does not."""
    entry = manifest.model(name)
    converted = GCNetHandler(manifest.sources()).converted_path(GCNetHandler.PREFIX + name)
    checkpoint = torch.load(converted, map_location="cpu", weights_only=True)
    model = instantiate(load_zoo_config(entry).model)
    problems = checkpoint_mismatches(model, checkpoint)
    if problems:
        print(f"gcnet.model_zoo: {name} does not fit {entry.config}: " + "; ".join(problems), file=sys.stderr)
        return 1
    keys = [k for k in model.state_dict() if not k.endswith(".num_batches_tracked")]
    print(
        f"{name}: {_digest_checked(entry)}; its {len(checkpoint['model'])} converted keys fill the {len(keys)} "
        f"parameters and buffers of {entry.config} exactly (none missing, none left over, every shape equal)"
    )
    for reproduced, label in ((True, "reproduced"), (False, "not reproduced")):
        rules = [r for r in entry.test_rules if manifest.test_rules[r].reproduced == reproduced]
        print(f"  upstream test-time rules {label}: {', '.join(rules) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
