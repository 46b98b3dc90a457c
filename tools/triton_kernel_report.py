#!/usr/bin/env python
"""Compile the Triton attention-pooling kernel for GPU targets, without a GPU, and report what
each compiled variant costs: registers per thread and register spills (ptxas -v).

    python tools/triton_kernel_report.py [--archs 80 90] [--dtypes float32 bfloat16 float16]
        [--layouts contiguous channels_last] [--shapes c2 c3 c4 c5 d8-c2 d8-c3 d8-c4 d8-c5]

For every shape, dtype and layout the script builds the launch that
``gcnet.layers.attention_pool_triton`` would make for such an input (on meta tensors: nothing
is allocated), specialises the kernel's arguments as Triton's launcher does, and compiles each
distinct variant once with ``triton.compile`` for each target (``GPUTarget("cuda", arch, 32)``);
ptxas, bundled with Triton, then reports the variant's registers and spills. A Markdown table
follows, then the number of variants that multi-scale COCO training compiles per stage
(padded image sizes 640-800 x 480-1344, every 32 pixels). The exit status is 1 when a variant
spills registers.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Sequence, Tuple

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
DTYPE_NAMES = ("float32", "bfloat16", "float16")
LAYOUT_NAMES = ("contiguous", "channels_last")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", type=int, default=[80, 90], help="compute capabilities (80: A100, 90: H100)")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPE_NAMES), default=list(DTYPE_NAMES))
    parser.add_argument("--layouts", nargs="+", choices=sorted(LAYOUT_NAMES), default=sorted(LAYOUT_NAMES))
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--json", help="also write the rows to this JSON file")
    return parser


if __name__ == "__main__":
    get_parser().parse_args()  # --help and bad options are answered before the slow import of torch below

import torch

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
LAYOUTS = dict(zip(LAYOUT_NAMES, (torch.contiguous_format, torch.channels_last)))
# Multi-scale COCO training: shorter side 640-800, padded to multiples of 32 (FPN); GC in c3-c5.
MULTISCALE_HEIGHTS = range(640, 801, 32)
MULTISCALE_WIDTHS = range(480, 1345, 32)
MULTISCALE_STAGES = {"c3": (512, 8), "c4": (1024, 16), "c5": (2048, 32)}

_PTXAS_USAGE = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads.*?Used (\d+) registers", re.S
)


def _kernel_module():
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("triton_kernel_report.py: unset TRITON_INTERPRET; the interpreter compiles nothing")
    from gcnet.layers import attention_pool_triton

    return attention_pool_triton


def meta_input(shape: Sequence[int], dtype: torch.dtype, layout: torch.memory_format) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta").contiguous(memory_format=layout)


class Compiler:
    """Triton's own specialisation and compilation of the kernel, for one GPU target."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource, make_backend
        from triton.runtime.jit import create_function_from_signature

        self.module = _kernel_module()
        self.kernel = self.module._partial_pool_kernel
        self.arch = arch
        self.target = GPUTarget("cuda", arch, 32)
        self.backend = make_backend(self.target)
        self.binder = create_function_from_signature(self.kernel.signature, self.kernel.params, self.backend)
        self.ast_source = ASTSource

    def variant(self, x: torch.Tensor) -> Tuple[str, tuple]:
        """(the launcher's cache key, the compile arguments) of the kernel's launch for ``x``."""
        launch = self.module.plan_launch(x, torch.empty(1, x.shape[1], 1, 1, device="meta"), torch.empty(1, device="meta"))
        bound, specialization, options = self.binder(*launch.args, **launch.options)
        key = str(specialization) + str(sorted(options.items()))
        return key, (launch.options, bound, specialization, options)

    def compile(self, compile_args: tuple):
        import triton

        launch_options, bound, specialization, options = compile_args
        options, signature, constexprs, attrs = self.kernel._pack_args(self.backend, launch_options, bound, specialization, options)
        source = self.ast_source(self.kernel, signature, constexprs, attrs)
        return triton.compile(source, target=self.target, options=options.__dict__)

    def usage(self, compiled) -> Dict[str, int]:
        """Registers and spills of a compiled variant, from ptxas -v on its PTX."""
        from triton import knobs
        from triton.backends.nvidia.compiler import sm_arch_from_capability

        with tempfile.TemporaryDirectory() as tmp:
            ptx = os.path.join(tmp, "kernel.ptx")
            with open(ptx, "w") as f:
                f.write(compiled.asm["ptx"])
            ptxas = knobs.nvidia.ptxas_blackwell if self.arch >= 100 else knobs.nvidia.ptxas
            command = [ptxas.path, "-v", "--regAllocOptLevel=2", f"--gpu-name={sm_arch_from_capability(self.arch)}", ptx, "-o", ptx + ".o"]
            log = subprocess.run(command, check=True, capture_output=True, text=True).stderr
        stack, stores, loads, registers = map(int, _PTXAS_USAGE.search(log).groups())
        return {"registers": registers, "spill_stores": stores, "spill_loads": loads, "stack": stack}


def report_rows(archs, dtypes, layouts, shapes) -> List[dict]:
    """One row per (shape, dtype, layout) with each target's usage; each variant compiled once."""
    compilers = [Compiler(arch) for arch in archs]
    usage_of: Dict[Tuple[int, str], dict] = {}
    rows = []
    for shape_name in shapes:
        for dtype_name in dtypes:
            for layout_name in layouts:
                x = meta_input(SHAPES[shape_name], DTYPES[dtype_name], LAYOUTS[layout_name])
                row = {"shape": shape_name, "size": "x".join(map(str, x.shape)), "dtype": dtype_name, "layout": layout_name}
                for compiler in compilers:
                    key, compile_args = compiler.variant(x)
                    if (compiler.arch, key) not in usage_of:
                        usage_of[compiler.arch, key] = compiler.usage(compiler.compile(compile_args))
                    row[f"sm_{compiler.arch}"] = usage_of[compiler.arch, key]
                    options = compile_args[0]
                    row["tile"] = f"{options['BLOCK_C']}x{options['BLOCK_P']}"
                    row["num_warps"] = options["num_warps"]
                rows.append(row)
    return rows


def multiscale_variants(dtypes, layouts, arch: int = 90) -> List[dict]:
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
                rows.append({"dtype": dtype_name, "layout": layout_name, "stage": stage, "sizes": len(sizes), "variants": len(keys)})
    return rows


def markdown(rows: List[dict], variant_rows: List[dict], archs) -> str:
    targets = [f"sm_{arch}" for arch in archs]
    lines = [
        "| shape | size | dtype | layout | tile | warps | " + " | ".join(f"{t} registers | {t} spills (bytes)" for t in targets) + " |",
        "|---|---|---|---|---|---:|" + "---:|---:|" * len(targets),
    ]
    for r in rows:
        usage = " | ".join(f"{r[t]['registers']} | {r[t]['spill_stores'] + r[t]['spill_loads']}" for t in targets)
        lines.append(f"| {r['shape']} | {r['size']} | {r['dtype']} | {r['layout']} | {r['tile']} | {r['num_warps']} | {usage} |")
    lines += ["", "| dtype | layout | stage | training sizes | compiled variants |", "|---|---|---|---:|---:|"]
    lines += [f"| {r['dtype']} | {r['layout']} | {r['stage']} | {r['sizes']} | {r['variants']} |" for r in variant_rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    rows = report_rows(args.archs, args.dtypes, args.layouts, args.shapes)
    variant_rows = multiscale_variants(args.dtypes, args.layouts, args.archs[-1])
    print(markdown(rows, variant_rows, args.archs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "multiscale": variant_rows}, f, indent=1)
    spilling = [r for r in rows for t in args.archs if r[f"sm_{t}"]["spill_stores"] or r[f"sm_{t}"]["spill_loads"]]
    if spilling:
        print(f"triton_kernel_report.py: {len(spilling)} rows spill registers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
