"""Speed of the GC block next to its peers, and of GCNet models next to their baselines
(``tools/benchmark.py``; tools/README.md gives the figures).

Blocks (:func:`block_rows`): on identical inputs and weights, in one process, the forward and
forward+backward medians (``torch.utils.benchmark``) of gcnet's ``ContextBlock`` (r16), mmcv's
``ContextBlock`` (the reference implementation), timm's ``GlobalContext``, an SE-style block
(average pooling, sigmoid rescaling), the NL block (where its N_p x N_p attention fits) and the
SNL block, after checking that the three GC blocks compute the same.

Models (:func:`model_rows`): each measurement in a fresh process of its own (so that its peak
memory is its own), a GCNet model with its baseline's weights (its GC blocks then start as the
identity, so both make the same predictions and do the same work downstream): seconds per
inference image or training iteration, peak memory, and the bytes autograd saves for backward.

On Linux, glibc's malloc returns blocks above 32 MiB to the kernel when they are freed, so every
large tensor then costs a page fault per 4 KiB page when it is first written, a cost that
depends on the allocation history and hides the computation being measured:
:data:`CACHING_MALLOC` keeps freed memory in the process, as PyTorch's CUDA allocator and
jemalloc/tcmalloc do (:func:`restart_with_caching_malloc`).
"""

import concurrent.futures
import contextlib
import json
import logging
import multiprocessing
import os
import resource
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.utils.benchmark as torch_benchmark
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from gcnet.layers import ContextBlock, NonLocalBlock, SimplifiedNonLocalBlock
from gcnet.utils.known_warnings import filter_known_warnings

__all__ = [
    "BLOCK_SHAPES",
    "CACHING_MALLOC",
    "DTYPES",
    "LAYOUTS",
    "block_rows",
    "block_table",
    "environment",
    "measure_model",
    "model_rows",
    "model_table",
    "peer_blocks",
    "restart_with_caching_malloc",
    "saved_tensor_bytes",
    "shape_rows",
    "synthetic_batch",
]

# Each measured row, as one line of JSON, as it is measured.
logger = logging.getLogger(__name__)

CACHING_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}
# The c2-c5 feature maps of an 800x1216 image, batch 2.
BLOCK_SHAPES = [(2, 256, 200, 304), (2, 512, 100, 152), (2, 1024, 50, 76), (2, 2048, 25, 38)]
DTYPES = {name: getattr(torch, name) for name in ("float32", "bfloat16", "float16")}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def restart_with_caching_malloc(system_malloc: bool = False) -> None:
    """Run this process's command again with :data:`CACHING_MALLOC` (glibc reads it at
    start-up; the processes it starts inherit it), unless it is set, ``system_malloc`` asks for
    glibc's defaults, or this is not Linux."""
    if system_malloc or not sys.platform.startswith("linux"):
        return
    if any(os.environ.get(k) != v for k, v in CACHING_MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **CACHING_MALLOC})


def environment(device: str) -> str:
    """One line on what runs the measurements: torch's version and the device, with the GPU's
    name, or the CPU threads and whether malloc keeps freed memory (:data:`CACHING_MALLOC`)."""
    if device.startswith("cuda"):
        return f"torch {torch.__version__}, {device} ({torch.cuda.get_device_name(device)})"
    caching = all(os.environ.get(k) == v for k, v in CACHING_MALLOC.items())
    malloc = "caching" if caching else "system"
    return f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {malloc} malloc"


# ----------------------------------------------------------------------------- blocks


def peer_blocks(channels: int) -> Dict[str, nn.Module]:
    """The paper's GC block (r16) in gcnet, mmcv and timm, with the same random weights, and
    the SE-style, NL and SNL blocks. mmcv (mmcv-lite) and timm are imported here."""
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
    peers = {"gcnet": ours, "mmcv": mmcv, "timm": timm, "se": se}
    return dict(peers, nl=NonLocalBlock(channels), snl=SimplifiedNonLocalBlock(channels))


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


def block_rows(
    device: torch.device, dtypes: Sequence[str], layouts: Sequence[str], min_run_time: float, max_attention_gb: float
) -> List[dict]:
    """One row per shape of :data:`BLOCK_SHAPES`, dtype, layout and block (:func:`shape_rows`);
    on CUDA, gcnet's rows also give the time of one read and one write of x at the device's
    copy bandwidth (``floor_ms``)."""
    rows = []
    for dtype_name in dtypes:
        bandwidth = copy_bandwidth(device, DTYPES[dtype_name]) if device.type == "cuda" else None
        for layout_name in layouts:
            for shape in BLOCK_SHAPES:
                rows += shape_rows(shape, dtype_name, layout_name, device, bandwidth, min_run_time, max_attention_gb)
    return rows


def _check_peers_agree(blocks: Dict[str, nn.Module], x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = blocks["gcnet"](x)
        for name in ("mmcv", "timm"):
            difference = (blocks[name](x) - expected).abs().max().item()
            if difference > (1e-3 if x.dtype == torch.float32 else 0.1):
                shape = tuple(x.shape)
                raise RuntimeError(f"{name} and gcnet disagree by {difference:.3g} at {shape}: not the same block")


def shape_rows(
    shape: Sequence[int],
    dtype_name: str,
    layout_name: str,
    device: torch.device,
    bandwidth: Optional[float],
    min_run_time: float,
    max_attention_gb: float,
) -> List[dict]:
    """The forward and forward+backward medians (ms) of every peer block on one input; the NL
    block is skipped (a row saying so) where its attention exceeds ``max_attention_gb``."""
    dtype = DTYPES[dtype_name]
    blocks = {name: m.to(device=device, dtype=dtype) for name, m in peer_blocks(shape[1]).items()}
    g = torch.Generator(device="cpu").manual_seed(0)
    layout = LAYOUTS[layout_name]
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype).contiguous(memory_format=layout)
    grad = torch.randn(shape, generator=g).to(device=device, dtype=dtype).contiguous(memory_format=layout)
    _check_peers_agree(blocks, x)
    attention_gb = shape[0] * (shape[2] * shape[3]) ** 2 * torch.finfo(dtype).bits / 8 / 1e9
    if attention_gb > max_attention_gb:
        del blocks["nl"]
    for block in blocks.values():  # warm-up: every block allocates its tensors once before any timing
        block(x.detach().clone().requires_grad_()).backward(grad)
    rows = []
    for name, block in blocks.items():
        row = dict(shape=list(shape), dtype=dtype_name, layout=layout_name, block=name)
        env = dict(block=block, x=x, leaf=x.detach().clone().requires_grad_(), grad=grad, torch=torch)
        with torch.no_grad():
            row["forward_ms"] = 1e3 * median_seconds("block(x)", env, min_run_time, device)
        step = "leaf.grad = None; block.zero_grad(set_to_none=True); block(leaf).backward(grad)"
        row["forward_backward_ms"] = 1e3 * median_seconds(step, env, min_run_time, device)
        if name == "gcnet" and bandwidth:
            row["floor_ms"] = 1e3 * 3 * x.numel() * x.element_size() / bandwidth
        rows.append(row)
        logger.info(json.dumps(row))
    if attention_gb > max_attention_gb:
        skipped = f"N_p x N_p attention of {attention_gb:.1f} GB"
        rows.append(dict(shape=list(shape), dtype=dtype_name, layout=layout_name, block="nl", skipped=skipped))
    return rows


def block_table(rows: List[dict]) -> str:
    """The rows as a Markdown table, each block's times also as a multiple of gcnet's."""
    lines = [
        "| shape | dtype | layout | block | forward (ms) | x gcnet | fwd+bwd (ms) | x gcnet | fwd / floor |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    ours = {(str(r["shape"]), r["dtype"], r["layout"]): r for r in rows if r["block"] == "gcnet"}
    for r in rows:
        prefix = f"| {'x'.join(map(str, r['shape']))} | {r['dtype']} | {r['layout']} | {r['block']} "
        if "skipped" in r:
            lines.append(prefix + f"| skipped: {r['skipped']} | | | | |")
            continue
        base = ours[str(r["shape"]), r["dtype"], r["layout"]]
        floor = f"{r['forward_ms'] / r['floor_ms']:.2f}" if "floor_ms" in r else ""
        forward = f"| {r['forward_ms']:.2f} | {r['forward_ms'] / base['forward_ms']:.2f} "
        both = f"| {r['forward_backward_ms']:.2f} | {r['forward_backward_ms'] / base['forward_backward_ms']:.2f} "
        lines.append(prefix + forward + both + f"| {floor} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- models


def synthetic_batch(model: nn.Module, size: Sequence[int], count: int, train: bool) -> List[dict]:
    """``count`` random images of ``size`` with ground truth for training: a few boxes with
    masks (R-CNN) or a random label map (segmentation)."""
    g = torch.Generator().manual_seed(0)
    height, width = size
    corners = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.9], [0.2, 0.5, 0.45, 0.95]])
    batch = []
    for _ in range(count):
        image = torch.randint(0, 256, (3, height, width), generator=g).float()
        item = {"image": image, "height": height, "width": width}
        if train and hasattr(model, "roi_heads"):
            instances = Instances((height, width))
            boxes = corners * torch.tensor([width, height] * 2)
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


def _build_model(config: str, weights_from: Optional[str]) -> nn.Module:
    """The model of the LazyConfig ``config`` (segmentation: whole-image inference), with the
    weights of the model of ``weights_from`` where given (its missing keys keep their init)."""
    torch.manual_seed(0)
    cfg = LazyConfig.load(config)
    if "inference" in cfg.model:
        cfg.model.inference.mode = "whole"
    model = instantiate(cfg.model)
    if weights_from:
        torch.manual_seed(0)
        model.load_state_dict(instantiate(LazyConfig.load(weights_from).model).state_dict(), strict=False)
    return model


def measure_model(
    config: str,
    weights_from: Optional[str],
    mode: str,
    size: Sequence[int],
    iters: int,
    device: str,
    channels_last: bool = False,
) -> dict:
    """One measurement in this process: the median seconds per inference image (1 image) or per
    training iteration (2 images, SGD) over ``iters`` steps after a warm-up, the peak memory,
    and for training the bytes saved for backward."""
    model = _build_model(config, weights_from).to(device)
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
        peak, memory = torch.cuda.max_memory_allocated(), "CUDA max_memory_allocated"
    else:
        peak, memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak RSS of the process"
    median = sorted(seconds)[len(seconds) // 2]
    row = dict(config=config, mode=mode, size=list(size), median_s=median, peak_gb=peak / 1e9, memory=memory)
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


def _measure_in_this_process(threads: Optional[int], kwargs: dict) -> dict:
    """:func:`measure_model` in a process started for it."""
    if threads:
        torch.set_num_threads(threads)
    return measure_model(**kwargs)


def model_rows(
    pairs: Dict[str, Tuple[str, str]],
    sizes: Dict[str, Sequence[int]],
    modes: Sequence[str],
    iters: int,
    device: str,
    channels_last: bool = False,
    threads: Optional[int] = None,
) -> List[dict]:
    """For each pair (name -> (baseline config, GCNet config), each measured at
    ``sizes[name]``) and mode, the baseline's row and the GCNet model's (with the baseline's
    weights), each measured by :func:`measure_model` in a fresh process."""
    rows = []
    spawn = multiprocessing.get_context("spawn")
    for pair, (baseline, gc) in pairs.items():
        for mode in modes:
            for config, weights_from in ((baseline, None), (gc, baseline)):
                kwargs = dict(config=config, weights_from=weights_from, mode=mode, size=tuple(sizes[pair]), iters=iters)
                kwargs.update(device=device, channels_last=channels_last)
                # The warning filter first, before the process imports this module and its dependencies.
                with concurrent.futures.ProcessPoolExecutor(1, spawn, initializer=filter_known_warnings) as process:
                    try:
                        row = process.submit(_measure_in_this_process, threads, kwargs).result()
                    except Exception as e:
                        raise RuntimeError(f"{config} ({mode}) failed: {type(e).__name__}: {e}") from e
                rows.append(dict(row, pair=pair))
                logger.info(json.dumps(rows[-1]))
    return rows


def model_table(rows: List[dict]) -> str:
    """Baseline and GCNet rows (as :func:`model_rows` pairs them) as a Markdown table, with the
    differences from the baseline."""
    lines = [
        "| model | mode | input | config | median | x baseline | peak memory (GB) | Δ memory (GB) "
        "| saved for backward (GB) |",
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
