"""Helpers shared by the test modules."""
import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def randomize_(module: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """Give every parameter random values, the zero-initialised ones included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, requests: List[str], **kwargs):
        self._requests = requests
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self._requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[tuple]:
    """Serve ``directory`` over HTTP on a loopback port; yields (base_url, requested paths)."""
    requests: List[str] = []
    handler = functools.partial(_RecordingHandler, directory=str(directory), requests=requests)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def tool_env(extra=None) -> dict:
    """The environment of a tool run: gcnet importable from this checkout."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONWARNINGS="ignore")
    env.update(extra or {})
    return env


def run_tool(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository root (e.g. ``run_tool("tools/train_net.py", ...)``)."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=REPO_ROOT,
        env=tool_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
