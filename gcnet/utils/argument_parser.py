"""The command line of the tools that run a model on many processes (``tools/train_net.py``,
``tools/predict.py``): detectron2's ``default_argument_parser``, built without importing torch
or detectron2 (so that ``--help`` answers at once), whose options are parsed wherever they stand
(before or after the ``key=value`` overrides) and whose launch options are checked before any
process starts. Every error is one line."""

import argparse
import os
import sys
from urllib.parse import urlparse

__all__ = [
    "default_argument_parser",
    "one_line_parser",
    "add_launch_arguments",
    "launch_problem",
    "LAUNCH_OPTIONS",
    "DEFAULT_RENDEZVOUS_TIMEOUT",
    "DEFAULT_SHARD_SIZE",
    "INFERENCE_SWITCHES",
    "add_inference_arguments",
    "inference_overrides",
]

# Seconds the machines of a multi-machine run wait for each other to start.
DEFAULT_RENDEZVOUS_TIMEOUT = 600.0
# Images per shard of tools/predict.py: the unit of work a process writes at once, and what a
# killed run predicts again (at most one shard per process).
DEFAULT_SHARD_SIZE = 500
# The options that say where the processes of a run are (a scheduler sets them for each node).
LAUNCH_OPTIONS = ("--num-gpus", "--num-machines", "--machine-rank", "--dist-url")


# The values of --channels-last and --compile, as the keys of train.inference take them.
INFERENCE_SWITCHES = {"on": True, "off": False, "auto": "auto"}


class _OneLineErrors(argparse.ArgumentParser):
    """Parses options wherever they stand (``parse_intermixed_args``, unless ``intermixed`` is
    False: a parser whose last positional takes the rest of the line), checks the launch
    options and overrides when it has them, and reports a bad command line in one line."""

    def __init__(self, *args, intermixed: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed

    def parse_args(self, args=None, namespace=None):
        if self.intermixed:
            parsed = self.parse_intermixed_args(args, namespace)
        else:
            parsed = super().parse_args(args, namespace)
        problem = launch_problem(parsed) if hasattr(parsed, "num_gpus") else ""
        problem = problem or _override_problem(getattr(parsed, "opts", []))
        if problem:
            self.error(problem)
        return parsed

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (--help lists the options)\n")


def _override_problem(opts) -> str:
    for opt in opts:
        if "=" not in opt:
            return f"{opt!r} is neither an option nor a key=value override"
    return ""


def launch_problem(args: argparse.Namespace) -> str:
    """What is wrong with the launch options of ``args`` ("" if nothing is)."""
    if args.num_gpus < 1:
        return f"--num-gpus must be at least 1 (processes per machine), got {args.num_gpus}"
    if args.num_machines < 1:
        return f"--num-machines must be at least 1, got {args.num_machines}"
    if not 0 <= args.machine_rank < args.num_machines:
        last = args.num_machines - 1
        return f"--machine-rank must be in 0..{last} for --num-machines {args.num_machines}, got {args.machine_rank}"
    if args.dist_timeout <= 0 or args.rendezvous_timeout <= 0:
        return "--dist-timeout and --rendezvous-timeout must be positive"
    url = urlparse(args.dist_url)
    if args.dist_url == "auto":
        return (
            "--dist-url auto works on one machine only: give tcp://<ip of machine 0>:<port>"
            if args.num_machines > 1
            else ""
        )
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme == "tcp" and (not url.hostname or port is None):
        return f"--dist-url {args.dist_url} must be tcp://<host>:<port>"
    if url.scheme not in ("tcp", "file"):
        return f"--dist-url {args.dist_url} must be tcp://<host>:<port>, file://<path> or auto"
    return ""


def one_line_parser(epilog: str = "", description: str = "", intermixed: bool = True) -> argparse.ArgumentParser:
    """An empty parser of this kind: options parsed wherever they stand (unless not
    ``intermixed``), launch options (when it has them, :func:`add_launch_arguments`) and
    ``opts`` checked, errors in one line."""
    return _OneLineErrors(
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        intermixed=intermixed,
    )


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """detectron2's launch options (:data:`LAUNCH_OPTIONS`, with their names, defaults and
    values), ``--dist-timeout`` and ``--rendezvous-timeout``."""
    parser.add_argument("--num-gpus", type=int, default=1, help="number of gpus *per machine*")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)")
    port = 2**15 + 2**14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2**14  # as detectron2's
    parser.add_argument(
        "--dist-url", default=f"tcp://127.0.0.1:{port}", help="initialization URL for pytorch distributed backend"
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=30,
        help="minutes a worker waits for the others in a collective before failing (a dead "
        "worker on another machine then stops the run instead of hanging it)",
    )
    parser.add_argument(
        "--rendezvous-timeout",
        type=float,
        default=DEFAULT_RENDEZVOUS_TIMEOUT,
        help=f"seconds the machines of a multi-machine run wait for each other to start "
        f"(default {DEFAULT_RENDEZVOUS_TIMEOUT:g})",
    )


def default_argument_parser(epilog: str = "") -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` options (the same names, defaults and values),
    plus ``--dist-timeout`` and ``--rendezvous-timeout``."""
    parser = one_line_parser(epilog)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint in train.output_dir")
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    add_launch_arguments(parser)
    parser.add_argument("opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides: path.key=value")
    return parser


def add_inference_arguments(parser: argparse.ArgumentParser, runtime: bool = True) -> None:
    """The flags of the inference fast path, each a key of the config's ``train.inference``
    (``gcnet.engine.InferenceOptions``), which holds when a flag is not given: ``--fold-norm``,
    and with ``runtime`` (not for an export) ``--channels-last``, ``--compile`` and ``--bfloat16``."""
    group = parser.add_argument_group("inference", "the fast path; a flag not given takes the config's train.inference")
    group.add_argument(
        "--fold-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fold each fixed BatchNorm into the conv before it (exact; on by default)",
    )
    if not runtime:
        return
    switches = list(INFERENCE_SWITCHES)
    group.add_argument(
        "--channels-last",
        choices=switches,
        default=None,
        help="the channels_last memory format (by default auto: measured once on this device)",
    )
    group.add_argument(
        "--compile",
        choices=switches,
        default=None,
        help="torch.compile the backbone and heads (by default auto: measured on GPUs, off on CPUs)",
    )
    group.add_argument(
        "--bfloat16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (opt-in: GPUs with bf16, CPUs with AVX512-BF16 or AMX; results change slightly)",
    )


def inference_overrides(args: argparse.Namespace) -> dict:
    """The ``train.inference`` keys that the flags of :func:`add_inference_arguments` set, None
    for a flag not given."""
    return {
        "fold_norm": args.fold_norm,
        "channels_last": INFERENCE_SWITCHES.get(getattr(args, "channels_last", None)),
        "compile": INFERENCE_SWITCHES.get(getattr(args, "compile", None)),
        "bfloat16": getattr(args, "bfloat16", None),
    }
