#!/usr/bin/env python
"""Speed of the GC block next to its peers, and of GCNet models next to their baselines.

    python tools/benchmark.py blocks [--device cuda] [--dtypes float32 bfloat16] [--layouts contiguous channels_last]
    python tools/benchmark.py models [--device cuda] [--iters 20]

blocks: on identical inputs and weights, in one process, the forward and forward+backward
medians (torch.utils.benchmark) of

* gcnet   gcnet.layers.ContextBlock (r16, the paper's block)
* mmcv    mmcv.cnn.ContextBlock (mmcv-lite, pure PyTorch), the reference implementation
* timm    timm.layers.GlobalContext(fuse_add=True, fuse_scale=False), the paper's block in timm
* se      an SE-style block (average pooling, sigmoid scaling): ContextBlock("avg", "channel_mul")
* nl      gcnet.layers.NonLocalBlock (embedded Gaussian); skipped where its N_p x N_p
          attention would not fit in --max-attention-gb
* snl     gcnet.layers.SimplifiedNonLocalBlock

at the c2-c5 shapes of an 800x1216 image, batch 2. The implementations are checked to compute
the same before they are timed. On Linux the script runs with malloc settings that keep freed
memory (CACHING_MALLOC), as a CUDA run or jemalloc/tcmalloc would; --system-malloc measures
with glibc's defaults, where large new tensors cost page faults. Each row gives the medians
and how many times slower each peer is than gcnet; on CUDA also gcnet's forward time over the
floor of one read of x (pooling) and one read and one write (the add) at the device's measured
copy bandwidth.

models: Mask R-CNN R50-FPN without and with GC r16 in c3-c5 (inference latency per image,
training iteration time at 2 images, peak memory and the bytes saved for backward), and the
Cityscapes ResNet-101 FCN against the GC head. Each measurement runs in a fresh process (so
that peak memory is its own); the GC model gets the baseline's weights (its GC blocks start as
the identity), so both make the same predictions and do the same work downstream.
"""
import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional

from gcnet.utils.known_warnings import filter_known_warnings

DTYPE_NAMES = ("float32", "bfloat16", "float16")
LAYOUT_NAMES = ("contiguous", "channels_last")
MODEL_PAIRS = {
    "mask_rcnn": (
        "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py",
        "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py",
    ),
    "cityscapes": (
        "configs/Cityscapes-SemanticSegmentation/fcn_R_101_D8_769x769_60k.py",
        "configs/Cityscapes-SemanticSegmentation/gc_head_R_101_D8_769x769_60k.py",
    ),
}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    blocks = commands.add_parser("blocks", help="the GC block and its peers")
    blocks.add_argument("--dtypes", nargs="+", choices=sorted(DTYPE_NAMES), default=["float32"])
    blocks.add_argument("--layouts", nargs="+", choices=sorted(LAYOUT_NAMES), default=["contiguous"])
    blocks.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timing per measurement")
    blocks.add_argument("--max-attention-gb", type=float, default=4.0, help="skip NL blocks whose attention is larger")
    models = commands.add_parser("models", help="GCNet models against their baselines")
    models.add_argument("--pairs", nargs="+", choices=sorted(MODEL_PAIRS), default=sorted(MODEL_PAIRS))
    models.add_argument("--modes", nargs="+", choices=["inference", "train"], default=["inference", "train"])
    models.add_argument("--iters", type=int, default=10, help="measured iterations (after one warm-up)")
    models.add_argument("--det-size", nargs=2, type=int, default=[800, 1216], metavar=("H", "W"))
    models.add_argument("--seg-size", nargs=2, type=int, default=[769, 769], metavar=("H", "W"))
    models.add_argument("--channels-last", action="store_true", help="models in channels_last memory format")
    worker = commands.add_parser("measure-model", help=argparse.SUPPRESS)
    worker.add_argument("--config", required=True)
    worker.add_argument("--weights-from")
    worker.add_argument("--mode", choices=["inference", "train"], required=True)
    worker.add_argument("--size", nargs=2, type=int, required=True)
    worker.add_argument("--iters", type=int, required=True)
    worker.add_argument("--channels-last", action="store_true")
    for sub in (blocks, models, worker):
        sub.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
        sub.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
        sub.add_argument("--system-malloc", action="store_true", help="keep glibc's default malloc settings")
    return parser


if __name__ == "__main__":
    get_parser().parse_args()  # --help and bad options are answered before the slow imports below
    filter_known_warnings()

import torch
import torch.utils.benchmark as torch_benchmark
from torch import nn

from gcnet.layers import ContextBlock, NonLocalBlock, SimplifiedNonLocalBlock

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# glibc's malloc returns blocks above 32 MiB to the kernel when they are freed, so every large
# tensor then costs a page fault per 4 KiB page when it is first written, a cost that depends on
# the allocation history and hides the computation being measured. These settings keep freed
# memory in the process, as PyTorch's CUDA allocator and jemalloc/tcmalloc do.
CACHING_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}
# The c2-c5 feature maps of an 800x1216 image, batch 2.
BLOCK_SHAPES = [(2, 256, 200, 304), (2, 512, 100, 152), (2, 1024, 50, 76), (2, 2048, 25, 38)]
DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
LAYOUTS = dict(zip(LAYOUT_NAMES, (torch.contiguous_format, torch.channels_last)))


# ----------------------------------------------------------------------------- blocks


def peer_blocks(channels: int) -> Dict[str, nn.Module]:
    """The paper's GC block (r16) in gcnet, mmcv and timm, with the same random weights."""
    from mmcv.cnn import ContextBlock as MMCVContextBlock
    from timm.layers import GlobalContext

    torch.manual_seed(0)
    ours = ContextBlock(channels, 1 / 16)
    for p in ours.parameters():  # the zero-initialised last conv too, so that outputs differ from x
        nn.init.normal_(p, std=0.05)
    mmcv = MMCVContextBlock(channels, 1 / 16)
    mmcv.load_state_dict(ours.state_dict())
    timm = GlobalContext(channels, fuse_add=True, fuse_scale=False, rd_channels=ours.planes)
    timm.mlp_add.norm.eps = ours.channel_add_conv[1].eps
    state = ours.state_dict()
    timm.load_state_dict(
        {
            "conv_attn.weight": state["conv_mask.weight"],
            "conv_attn.bias": state["conv_mask.bias"],
            "mlp_add.fc1.weight": state["channel_add_conv.0.weight"],
            "mlp_add.fc1.bias": state["channel_add_conv.0.bias"],
            "mlp_add.norm.weight": state["channel_add_conv.1.weight"].flatten(),
            "mlp_add.norm.bias": state["channel_add_conv.1.bias"].flatten(),
            "mlp_add.fc2.weight": state["channel_add_conv.3.weight"],
            "mlp_add.fc2.bias": state["channel_add_conv.3.bias"],
        }
    )
    se = ContextBlock(channels, 1 / 16, pooling_type="avg", fusion_types=("channel_mul",))
    return {"gcnet": ours, "mmcv": mmcv, "timm": timm, "se": se, "nl": NonLocalBlock(channels), "snl": SimplifiedNonLocalBlock(channels)}


def median_seconds(stmt: str, env: dict, min_run_time: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    timer = torch_benchmark.Timer(stmt, globals=env)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def copy_bandwidth(device: torch.device, dtype: torch.dtype) -> float:
    """Bytes per second of a device-to-device copy of a 256 MiB tensor (read + write)."""
    x = torch.empty(64 * 2**20, device=device, dtype=torch.float32).to(dtype)
    y = torch.empty_like(x)
    seconds = median_seconds("y.copy_(x)", dict(x=x, y=y), 0.5, device)
    return 2 * x.numel() * x.element_size() / seconds


def block_rows(args) -> List[dict]:
    device = torch.device(args.device)
    rows = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        bandwidth = copy_bandwidth(device, dtype) if device.type == "cuda" else None
        for layout_name in args.layouts:
            for shape in BLOCK_SHAPES:
                rows += shape_rows(shape, dtype_name, dtype, layout_name, device, bandwidth, args)
    return rows


def shape_rows(shape, dtype_name, dtype, layout_name, device, bandwidth, args) -> List[dict]:
    blocks = {name: m.to(device=device, dtype=dtype) for name, m in peer_blocks(shape[1]).items()}
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype).contiguous(memory_format=LAYOUTS[layout_name])
    grad = torch.randn(shape, generator=g).to(device=device, dtype=dtype).contiguous(memory_format=LAYOUTS[layout_name])
    with torch.no_grad():
        expected = blocks["gcnet"](x)
        for name in ("mmcv", "timm"):
            difference = (blocks[name](x) - expected).abs().max().item()
            tolerance = 1e-3 if dtype == torch.float32 else 0.1
            if difference > tolerance:
                raise RuntimeError(f"{name} and gcnet disagree by {difference:.3g} at {shape}: not the same block")
    positions = shape[2] * shape[3]
    attention_gb = shape[0] * positions**2 * torch.finfo(dtype).bits / 8 / 1e9
    if attention_gb > args.max_attention_gb:
        del blocks["nl"]
    for block in blocks.values():  # warm-up: every block allocates its tensors once before any timing
        leaf = x.detach().clone().requires_grad_()
        block(leaf).backward(grad)
    rows = []
    for name, block in blocks.items():
        row = dict(shape=list(shape), dtype=dtype_name, layout=layout_name, block=name)
        leaf = x.detach().clone().requires_grad_()
        env = dict(block=block, x=x, leaf=leaf, grad=grad, torch=torch)
        with torch.no_grad():
            row["forward_ms"] = 1e3 * median_seconds("block(x)", env, args.min_run_time, device)
        row["forward_backward_ms"] = 1e3 * median_seconds(
            "leaf.grad = None; block.zero_grad(set_to_none=True); block(leaf).backward(grad)", env, args.min_run_time, device
        )
        if name == "gcnet" and bandwidth:
            floor_ms = 1e3 * 3 * x.numel() * x.element_size() / bandwidth
            row["floor_ms"] = floor_ms
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    if attention_gb > args.max_attention_gb:
        rows.append(dict(shape=list(shape), dtype=dtype_name, layout=layout_name, block="nl", skipped=f"N_p x N_p attention of {attention_gb:.1f} GB"))
    return rows


def block_table(rows: List[dict]) -> str:
    lines = [
        "| shape | dtype | layout | block | forward (ms) | x gcnet | fwd+bwd (ms) | x gcnet | fwd / floor |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    ours = {(str(r["shape"]), r["dtype"], r["layout"]): r for r in rows if r["block"] == "gcnet"}
    for r in rows:
        key = (str(r["shape"]), r["dtype"], r["layout"])
        prefix = f"| {'x'.join(map(str, r['shape']))} | {r['dtype']} | {r['layout']} | {r['block']} "
        if "skipped" in r:
            lines.append(prefix + f"| skipped: {r['skipped']} | | | | |")
            continue
        base = ours[key]
        floor = f"{r['forward_ms'] / r['floor_ms']:.2f}" if "floor_ms" in r else ""
        lines.append(
            prefix
            + f"| {r['forward_ms']:.2f} | {r['forward_ms'] / base['forward_ms']:.2f} "
            + f"| {r['forward_backward_ms']:.2f} | {r['forward_backward_ms'] / base['forward_backward_ms']:.2f} | {floor} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- models


def synthetic_batch(model, size, count: int, train: bool) -> List[dict]:
    """``count`` random images of ``size`` with ground truth for training: a few boxes with
    masks (R-CNN) or a random label map (segmentation)."""
    from detectron2.structures import BitMasks, Boxes, Instances

    g = torch.Generator().manual_seed(0)
    height, width = size
    batch = []
    for _ in range(count):
        item = {"image": torch.randint(0, 256, (3, height, width), generator=g).float(), "height": height, "width": width}
        if train and hasattr(model, "roi_heads"):
            instances = Instances((height, width))
            boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.9], [0.2, 0.5, 0.45, 0.95]]) * torch.tensor([width, height] * 2)
            instances.gt_boxes = Boxes(boxes)
            instances.gt_classes = torch.arange(3) % model.roi_heads.num_classes
            masks = torch.zeros(3, height, width, dtype=torch.bool)
            for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
                mask[y1:y2, x1:x2] = True
            instances.gt_masks = BitMasks(masks)
            item["instances"] = instances
        elif train:
            item["sem_seg"] = torch.randint(0, 19, (height, width), generator=g)
        batch.append(item)
    return batch


def measure_model(config: str, weights_from: Optional[str], mode: str, size, iters: int, device: str, channels_last: bool) -> dict:
    """One measurement in this process: median seconds per inference image or per training
    iteration, the peak memory, and for training the bytes saved for backward."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, config))
    if "inference" in cfg.model:  # segmentation: the whole image at once
        cfg.model.inference.mode = "whole"
    model = instantiate(cfg.model)
    if weights_from:
        torch.manual_seed(0)
        base_cfg = LazyConfig.load(os.path.join(REPO_ROOT, weights_from))
        model.load_state_dict(instantiate(base_cfg.model).state_dict(), strict=False)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train = mode == "train"
    model.train(train)
    batch = synthetic_batch(model, size, 2 if train else 1, train)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9) if train else None

    def step():
        if train:
            with EventStorage():
                losses = model(batch)
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with saved_tensor_bytes() as saved:  # warm-up (allocations, cudnn algorithm choice)
        step()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated()
        memory = "CUDA max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        memory = "peak RSS of the process"
    seconds.sort()
    row = dict(config=config, mode=mode, size=list(size), median_s=seconds[len(seconds) // 2], peak_gb=peak / 1e9, memory=memory)
    if train:
        row["saved_gb"] = sum(saved.values()) / 1e9
    return row


@contextlib.contextmanager
def saved_tensor_bytes():
    """Counts the bytes autograd saves for backward (each storage once): the activation memory
    of a training step, exact where the peak RSS of a CPU process is not."""
    storages: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield storages


def model_rows(args) -> List[dict]:
    rows = []
    for pair in args.pairs:
        baseline, gc = MODEL_PAIRS[pair]
        size = args.seg_size if pair == "cityscapes" else args.det_size
        for mode in args.modes:
            for config, weights_from in ((baseline, None), (gc, baseline)):
                command = [
                    sys.executable, os.path.abspath(__file__), "measure-model", "--config", config, "--mode", mode,
                    "--size", *map(str, size), "--iters", str(args.iters), "--device", args.device,
                ]  # fmt: skip
                if weights_from:
                    command += ["--weights-from", weights_from]
                if args.channels_last:
                    command += ["--channels-last"]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                if args.system_malloc:
                    command += ["--system-malloc"]
                result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=_env())
                if result.returncode != 0:
                    raise RuntimeError(f"{config} ({mode}) failed:\n{result.stderr[-3000:]}")
                row = json.loads(result.stdout.strip().splitlines()[-1])
                row["pair"] = pair
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    return rows


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))


def model_table(rows: List[dict]) -> str:
    lines = [
        "| model | mode | input | config | median | x baseline | peak memory (GB) | Δ memory (GB) | saved for backward (GB) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for base, gc in zip(rows[0::2], rows[1::2]):
        for r in (base, gc):
            unit = "s/image" if r["mode"] == "inference" else "s/iter"
            saved = f"{r['saved_gb']:.3f} ({r['saved_gb'] - base['saved_gb']:+.3f})" if "saved_gb" in r else ""
            lines.append(
                f"| {r['pair']} | {r['mode']} | {'x'.join(map(str, r['size']))} | {os.path.basename(r['config'])} "
                f"| {r['median_s']:.3f} {unit} | {r['median_s'] / base['median_s']:.3f} "
                f"| {r['peak_gb']:.2f} | {r['peak_gb'] - base['peak_gb']:+.2f} | {saved} |"
            )
    lines.append(f"\nMemory: {rows[0]['memory']}.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "measure-model":
        print(json.dumps(measure_model(args.config, args.weights_from, args.mode, args.size, args.iters, args.device, args.channels_last)))
        return 0
    caching = all(os.environ.get(k) == v for k, v in CACHING_MALLOC.items())
    header = f"torch {torch.__version__}, {args.device}" + (
        f" ({torch.cuda.get_device_name()})"
        if args.device.startswith("cuda")
        else f", {torch.get_num_threads()} threads, {'caching' if caching else 'system'} malloc"
    )
    print(f"{header}\n")
    if args.command == "blocks":
        print(block_table(block_rows(args)))
    else:
        print(model_table(model_rows(args)))
    return 0


def _with_caching_malloc(argv: List[str]) -> None:
    """Run this script again with :data:`CACHING_MALLOC` (glibc reads it at start-up), unless
    it is set or --system-malloc asks for the default allocator."""
    if "--system-malloc" in argv or not sys.platform.startswith("linux"):
        return
    if any(os.environ.get(k) != v for k, v in CACHING_MALLOC.items()):
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], {**os.environ, **CACHING_MALLOC})


if __name__ == "__main__":
    _with_caching_malloc(sys.argv[1:])
    sys.exit(main())
