"""What each compiled variant of the Triton attention-pooling kernel costs on GPU targets,
found without a GPU (``tools/triton_kernel_report.py``).

For every shape, dtype and layout, :func:`report_rows` builds the launch that
:mod:`gcnet.layers.attention_pool_triton` would make for such an input (on meta tensors:
nothing is allocated), specialises the kernel's arguments as Triton's launcher does, compiles
each distinct variant once with ``triton.compile`` for each target (``GPUTarget("cuda", arch,
32)``) and reads the registers per thread and the register spills from ptxas -v (the ptxas
bundled with Triton) on its PTX. :func:`multiscale_variants` counts the variants that
multi-scale COCO training compiles per stage (padded image sizes 640-800 x 480-1344, every 32
pixels). Triton's launcher helpers used here carry no leading underscore; checked with Triton
3.8.
"""

import os
import re
import subprocess
import tempfile
from typing import Dict, List, Sequence, Tuple

import torch
import triton
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import sm_arch_from_capability
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

from gcnet.layers.attention_pool_triton import plan_launch

__all__ = ["SHAPES", "Compiler", "report_rows", "multiscale_variants", "markdown", "spilling_rows"]

# The feature maps the GC block pools: c2-c5 of an 800x1216 COCO image and of a 769x769
# Cityscapes crop in the dilated (output stride 8) ResNet, batch 2.
SHAPES = {
    "c2": (2, 256, 200, 304),
    "c3": (2, 512, 100, 152),
    "c4": (2, 1024, 50, 76),
    "c5": (2, 2048, 25, 38),
    "d8-c2": (2, 256, 193, 193),
    "d8-c3": (2, 512, 97, 97),
    "d8-c4": (2, 1024, 97, 97),
    "d8-c5": (2, 2048, 97, 97),
}
DTYPES = {name: getattr(torch, name) for name in ("float32", "bfloat16", "float16")}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# Multi-scale COCO training: shorter side 640-800, padded to multiples of 32 (FPN); GC in c3-c5.
MULTISCALE_HEIGHTS = range(640, 801, 32)
MULTISCALE_WIDTHS = range(480, 1345, 32)
MULTISCALE_STAGES = {"c3": (512, 8), "c4": (1024, 16), "c5": (2048, 32)}

_PTXAS_USAGE = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads.*?Used (\d+) registers", re.S
)


def meta_input(shape: Sequence[int], dtype: torch.dtype, layout: torch.memory_format) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta").contiguous(memory_format=layout)


class Compiler:
    """Triton's own specialisation and compilation of the kernel, for one GPU target."""

    def __init__(self, arch: int):
        if os.environ.get("TRITON_INTERPRET") == "1":
            raise ValueError("unset TRITON_INTERPRET: the interpreter compiles nothing")
        self.arch = arch
        self.target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.target)
        self.binder = None

    def variant(self, x: torch.Tensor) -> Tuple[str, tuple]:
        """(the launcher's cache key, the compile arguments) of the kernel's launch for ``x``."""
        weight, bias = torch.empty(1, x.shape[1], 1, 1, device="meta"), torch.empty(1, device="meta")
        launch = plan_launch(x, weight, bias)
        if self.binder is None:  # Triton's own: how the launcher specialises the arguments
            self.binder = create_function_from_signature(launch.kernel.signature, launch.kernel.params, self.backend)
        bound, specialization, options = self.binder(*launch.args, **launch.options)
        key = str(specialization) + str(sorted(options.items()))
        return key, (launch.kernel, launch.options, bound, specialization)

    def compile(self, compile_args: tuple):
        """``triton.compile`` of one variant: the signature, constants and attributes of its
        arguments, as Triton's launcher derives them (for the kernel's flat arguments)."""
        kernel, launch_options, bound, specialization = compile_args
        kinds = [kind for kind, _ in specialization]
        signature = dict(zip([p.name for p in kernel.params], kinds))
        values = list(bound.values())
        constants = {(i,): values[i] for i, kind in enumerate(kinds) if kind == "constexpr"}
        attrs = {
            (i,): self.backend.parse_attr(attr)
            for i, (kind, attr) in enumerate(specialization)
            if kind != "constexpr" and isinstance(attr, str)
        }
        options = self.backend.parse_options(launch_options)
        return triton.compile(ASTSource(kernel, signature, constants, attrs), target=self.target, options=vars(options))

    def usage(self, compiled) -> Dict[str, int]:
        """Registers and spills of a compiled variant, from ptxas -v on its PTX."""
        with tempfile.TemporaryDirectory() as tmp:
            ptx = os.path.join(tmp, "kernel.ptx")
            with open(ptx, "w") as f:
                f.write(compiled.asm["ptx"])
            ptxas = knobs.nvidia.ptxas_blackwell if self.arch >= 100 else knobs.nvidia.ptxas
            gpu = f"--gpu-name={sm_arch_from_capability(self.arch)}"
            command = [ptxas.path, "-v", "--regAllocOptLevel=2", gpu, ptx, "-o", ptx + ".o"]
            log = subprocess.run(command, check=True, capture_output=True, text=True).stderr
        stack, stores, loads, registers = map(int, _PTXAS_USAGE.search(log).groups())
        return {"registers": registers, "spill_stores": stores, "spill_loads": loads, "stack": stack}


def report_rows(
    archs: Sequence[int], dtypes: Sequence[str], layouts: Sequence[str], shapes: Sequence[str]
) -> List[dict]:
    """One row per (shape, dtype, layout) with each target's usage; each variant compiled once."""
    compilers = [Compiler(arch) for arch in archs]
    usage_of: Dict[Tuple[int, str], dict] = {}
    rows = []
    for shape_name in shapes:
        for dtype_name in dtypes:
            for layout_name in layouts:
                x = meta_input(SHAPES[shape_name], DTYPES[dtype_name], LAYOUTS[layout_name])
                row = {"shape": shape_name, "size": "x".join(map(str, x.shape)), "dtype": dtype_name}
                row["layout"] = layout_name
                for compiler in compilers:
                    key, compile_args = compiler.variant(x)
                    if (compiler.arch, key) not in usage_of:
                        usage_of[compiler.arch, key] = compiler.usage(compiler.compile(compile_args))
                    row[f"sm_{compiler.arch}"] = usage_of[compiler.arch, key]
                    options = compile_args[1]
                    row["tile"] = f"{options['BLOCK_C']}x{options['BLOCK_P']}"
                    row["num_warps"] = options["num_warps"]
                rows.append(row)
    return rows


def multiscale_variants(dtypes: Sequence[str], layouts: Sequence[str], arch: int = 90) -> List[dict]:
    """Per dtype, layout and stage: how many padded training sizes there are and how many
    distinct kernel variants they compile."""
    compiler = Compiler(arch)
    rows = []
    for dtype_name in dtypes:
        for layout_name in layouts:
            for stage, (channels, stride) in MULTISCALE_STAGES.items():
                sizes = {(h // stride, w // stride) for h in MULTISCALE_HEIGHTS for w in MULTISCALE_WIDTHS}
                keys = {
                    compiler.variant(meta_input((2, channels, h, w), DTYPES[dtype_name], LAYOUTS[layout_name]))[0]
                    for h, w in sizes
                }
                row = {"dtype": dtype_name, "layout": layout_name, "stage": stage, "sizes": len(sizes)}
                rows.append(dict(row, variants=len(keys)))
    return rows


def spilling_rows(rows: List[dict], archs: Sequence[int]) -> List[dict]:
    """The rows of :func:`report_rows` where a variant spills registers on one of ``archs``."""
    return [r for r in rows if any(r[f"sm_{t}"]["spill_stores"] or r[f"sm_{t}"]["spill_loads"] for t in archs)]


def markdown(rows: List[dict], variant_rows: List[dict], archs: Sequence[int]) -> str:
    """The rows of :func:`report_rows` and :func:`multiscale_variants` as two Markdown tables."""
    targets = [f"sm_{arch}" for arch in archs]
    lines = [
        "| shape | size | dtype | layout | tile | warps | "
        + " | ".join(f"{t} registers | {t} spills (bytes)" for t in targets)
        + " |",
        "|---|---|---|---|---|---:|" + "---:|---:|" * len(targets),
    ]
    for r in rows:
        usage = " | ".join(f"{r[t]['registers']} | {r[t]['spill_stores'] + r[t]['spill_loads']}" for t in targets)
        cells = f"| {r['shape']} | {r['size']} | {r['dtype']} | {r['layout']} | {r['tile']} | {r['num_warps']} "
        lines.append(cells + f"| {usage} |")
    lines += ["", "| dtype | layout | stage | training sizes | compiled variants |", "|---|---|---|---:|---:|"]
    lines += [f"| {r['dtype']} | {r['layout']} | {r['stage']} | {r['sizes']} | {r['variants']} |" for r in variant_rows]
    return "\n".join(lines)
