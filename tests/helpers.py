"""Helpers shared by the test modules."""

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
# Where the real test data is looked for, in order (python -m tests.fetch_test_data writes the
# last one); a folder is complete once it holds MANIFEST.md.
TEST_DATA_ENV = "GCNET_TEST_DATA"
TEST_DATA_FALLBACKS = (REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "datasets" / "gcnet-test-data")
TEST_DATA_COMMAND = "python -m tests.fetch_test_data"
# A GC-ResNet-18-FPN Mask R-CNN at a tiny input size on balloon: the tools' test model.
TINY_CONFIG = str(REPO_ROOT / "tests" / "configs" / "mask_rcnn_R_18_FPN_gc_tiny_balloon.py")
# The same with an evaluation that keeps 5 instances an image (short COCO results).
TINY_EVAL_CONFIG = str(REPO_ROOT / "tests" / "configs" / "mask_rcnn_R_18_FPN_gc_tiny_balloon_eval.py")


def find_test_data() -> Path:
    """The real test data: $GCNET_TEST_DATA when set, else ../shared/data beside the checkout,
    else datasets/gcnet-test-data in it.

    Raises:
        FileNotFoundError: with one line that names where it looked and the command that
            downloads the data.
    """
    given: Optional[str] = os.environ.get(TEST_DATA_ENV)
    candidates = [Path(given)] if given else list(TEST_DATA_FALLBACKS)
    for folder in candidates:
        if (folder / "MANIFEST.md").is_file():
            return folder
    where = f"${TEST_DATA_ENV}={given}" if given else " or ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"No test data in {where}: download it with `{TEST_DATA_COMMAND}`")


def randomize_(module: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """Give every parameter random values, the zero-initialised ones included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def randomize_norms_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random statistics and affine parameters for every BatchNorm (frozen, or a BatchNorm2d
    such as SyncBN), scaled so that features stay of order 1-100 through the depth of a random
    ResNet; small random weights for the parts that start at zero (GC blocks' last convs, DCN
    offset convs); and every detection kept, whatever its score."""
    from detectron2.layers import FrozenBatchNorm2d
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers

    from gcnet.layers import ContextBlock

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (FrozenBatchNorm2d, nn.BatchNorm2d)):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=g) * 0.4 + 0.3)
                module.bias.copy_(torch.randn(c, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            elif isinstance(module, ContextBlock) or name.endswith("conv2_offset"):
                for p in module.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif isinstance(module, FastRCNNOutputLayers):
                module.test_score_thresh = 0.0
    return model


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, requests: List[str], redirects: Dict[str, str], **kwargs):
        self._requests = requests
        self._redirects = redirects
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self._requests.append(self.path)
        if self.path in self._redirects:
            self.send_response(302)
            self.send_header("Location", self._redirects[self.path])
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_directory(directory: Path, redirects: Optional[Dict[str, str]] = None) -> Iterator[tuple]:
    """Serve ``directory`` over HTTP on a loopback port, answering the paths of ``redirects``
    with a redirect to their value; yields (base_url, requested paths)."""
    requests: List[str] = []
    handler = functools.partial(
        _RecordingHandler, directory=str(directory), requests=requests, redirects=dict(redirects or {})
    )
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


def predict_in_process(cfg, inputs, output, num_workers=0, **plan_options) -> dict:
    """What ``tools/predict.py`` does in one process on the CPU: plan, predict, merge; returns
    the counts of the results."""
    from gcnet.engine.prediction import PredictionOptions, PredictionRun, plan_run

    images_file = f"{output}.images.jsonl"
    plan, complete = plan_run(cfg, [str(i) for i in inputs], str(output), images_file, **plan_options)
    assert not complete
    run = PredictionRun(cfg, plan, images_file, PredictionOptions(str(output), device="cpu", num_workers=num_workers))
    run.start()
    run.predict()
    return run.finish()


# CamVid class -> Cityscapes label id (../shared/data/MANIFEST.md); 11 (unlabelled) -> 0.
CAMVID_TO_CITYSCAPES_ID = [23, 11, 17, 7, 8, 21, 20, 13, 26, 24, 25, 0]


def write_camvid_as_cityscapes(camvid: Path, root: Path, counts: dict) -> Path:
    """Write the first ``counts[split]`` CamVid pairs of each split in the Cityscapes layout
    under ``root``/cityscapes (images linked, labels mapped to Cityscapes label ids, an
    instance map without instances, the polygons file with the image size)."""
    import json

    import numpy as np
    from PIL import Image

    lut = np.array(CAMVID_TO_CITYSCAPES_ID, dtype=np.uint8)
    for split, count in counts.items():
        pairs = (camvid / f"camvid_subset_{split}.txt").read_text().split("\n")
        image_dir = root / "cityscapes" / "leftImg8bit" / split / "camvid"
        gt_dir = root / "cityscapes" / "gtFine" / split / "camvid"
        image_dir.mkdir(parents=True)
        gt_dir.mkdir(parents=True)
        for line in pairs[:count]:
            image, label = line.split()
            name = Path(image).stem
            (image_dir / f"{name}_leftImg8bit.png").symlink_to(camvid / image)
            ids = lut[np.asarray(Image.open(camvid / label))]
            Image.fromarray(ids).save(gt_dir / f"{name}_gtFine_labelIds.png")
            Image.fromarray(ids.astype(np.uint16)).save(gt_dir / f"{name}_gtFine_instanceIds.png")
            height, width = ids.shape
            (gt_dir / f"{name}_gtFine_polygons.json").write_text(
                json.dumps({"imgHeight": height, "imgWidth": width, "objects": []})
            )
    return root / "cityscapes"
