#!/usr/bin/env python
"""Submit tools/train_net.py or tools/predict.py to a SLURM cluster with submitit: one job on
--nodes nodes with --gpus-per-node GPUs each, requeued when it is preempted or reaches its time
limit, and resumed (training from its last checkpoint, prediction from its finished shards).

    python tools/submit.py --nodes 2 --gpus-per-node 8 --partition learnfair --time 4320 \\
        tools/train_net.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_syncbn_gc_r16_1x.py
    python tools/submit.py --nodes 4 --gpus-per-node 8 --partition learnfair \\
        tools/predict.py --model mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco --input paths.txt --output preds/

Everything after the tool is its command line, without the launch options (--num-gpus,
--num-machines, --machine-rank, --dist-url), which the job sets on each node. The logs of the
job's tasks are <job dir>/<job id>_<task>_log.out and .err (--job-dir, default submitit/<job
id> in the current folder, which, as the run's output, must be on a file system the nodes
share). --cluster local runs the job on this machine (one node), to try it.
"""

import argparse

from gcnet.utils.argument_parser import one_line_parser
from gcnet.utils.known_warnings import filter_known_warnings


def parse_args(argv=None):
    parser = one_line_parser(__doc__, intermixed=False)
    parser.add_argument("--nodes", type=int, required=True, help="the machines of the job")
    parser.add_argument("--gpus-per-node", type=int, required=True, help="GPUs of each machine: one tool process each")
    parser.add_argument("--cpus-per-gpu", type=int, help="CPUs of each GPU, for its image decoding (default 8)")
    parser.add_argument("--mem-gb", type=float, help="memory of each node (default: the partition's)")
    parser.add_argument(
        "--time",
        type=int,
        dest="timeout_min",
        metavar="MINUTES",
        help="time limit of the job (default 24 h); it is then requeued and resumed",
    )
    parser.add_argument(
        "--signal-delay",
        type=int,
        dest="signal_delay_s",
        metavar="SECONDS",
        help="how long before the time limit the job is stopped and requeued (default 120)",
    )
    for name in ("partition", "account", "qos", "constraint", "comment"):
        parser.add_argument(f"--{name}", help=f"SLURM's --{name}")
    parser.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another sbatch option (mail-type=END), repeated",
    )
    parser.add_argument("--name", help="the job's name (default: the tool's)")
    parser.add_argument(
        "--job-dir",
        default="submitit/%j",
        help="submitit's files and the logs; %%j is the job id (default submitit/%%j)",
    )
    parser.add_argument("--cluster", default="slurm", help="slurm, or local: this machine (default slurm)")
    parser.add_argument("--wait", action="store_true", help="wait for the job to end, and exit as it did")
    parser.add_argument("tool", help="tools/train_net.py or tools/predict.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the tool's arguments")
    args = parser.parse_args(argv)
    unpaired = [item for item in args.slurm if "=" not in item]
    if unpaired:
        parser.error(f"--slurm {unpaired[0]}: expected KEY=VALUE")
    return args


if __name__ == "__main__":
    ARGS = parse_args()  # --help and bad options are answered before the slow imports below
    filter_known_warnings()

import dataclasses
import os
import sys

from gcnet.engine.cluster import ClusterOptions, submit_tool

TOOL = "submit"


def cluster_options(args) -> ClusterOptions:
    """The options given on the command line; the others keep ClusterOptions' defaults."""
    given = {field.name: getattr(args, field.name, None) for field in dataclasses.fields(ClusterOptions)}
    given.update(
        slurm_options=dict(item.split("=", 1) for item in args.slurm), name=args.name or os.path.basename(args.tool)
    )
    return ClusterOptions(**{key: value for key, value in given.items() if value is not None})


def main(args) -> int:
    try:
        job = submit_tool(args.tool, args.args, args.job_dir, cluster_options(args), cluster=args.cluster)
    except ValueError as e:
        print(f"{TOOL}: {e}", file=sys.stderr)
        return 1
    print(f"Submitted job {job.job_id}; logs: {job.paths.stdout} and {job.paths.stderr}")
    if not args.wait:
        return 0
    try:
        job.result()
    except Exception as e:  # submitit's FailedJobError and UncompletedJobError carry the task's traceback
        print(
            f"{TOOL}: job {job.job_id} failed ({str(e).strip().splitlines()[-1]}); see {job.paths.stderr}",
            file=sys.stderr,
        )
        return 1
    print(f"Job {job.job_id} finished")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
