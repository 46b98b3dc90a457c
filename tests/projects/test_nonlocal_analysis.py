"""projects/NonLocalAnalysis: the average cosine distance of Section 3.2.2, the statistics of
Tables 1-4 measured from a model's non-local blocks, and the analysis script on real images."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import LazyConfig, instantiate

from gcnet.engine import GCNetCheckpointer, Predictor, load_config
from gcnet.layers import NON_LOCAL_MODES, NonLocalBlock

from ..helpers import REPO_ROOT, TINY_CONFIG, randomize_, run_tool

PROJECT = REPO_ROOT / "projects" / "NonLocalAnalysis"


@pytest.fixture(scope="module")
def project():
    """The project's package, importable as when its script runs (from the project's folder)."""
    patch = pytest.MonkeyPatch()
    patch.syspath_prepend(str(PROJECT))
    import nonlocal_analysis

    yield nonlocal_analysis
    patch.undo()


def brute_force(vectors: torch.Tensor) -> float:
    v = vectors.detach().double()
    v = v[v.norm(dim=1) > 0]
    cos = torch.nn.functional.cosine_similarity(v[:, None], v[None], dim=-1)
    return float(((1 - cos) / 2).mean())


def test_cosine_distance_closed_form(project):
    average_cosine_distance = project.average_cosine_distance
    same = torch.tensor([[1.0, 2.0, 3.0]]).repeat(5, 1) * torch.arange(1, 6.0)[:, None]  # one direction
    assert average_cosine_distance(same) == pytest.approx(0.0, abs=1e-12)
    # Half the rows along e1, half along e2: pairs within a half are at 0, across at 1/2, so the
    # average over all N^2 pairs is 2 (N/2)^2 * 1/2 / N^2 = 1/4.
    halves = torch.cat([torch.eye(2)[0].repeat(3, 1), torch.eye(2)[1].repeat(3, 1)])
    assert average_cosine_distance(halves) == pytest.approx(0.25, abs=1e-12)
    opposite = torch.tensor([[1.0, 0.0], [-2.0, 0.0]])  # cos -1: distance 1 for 2 of 4 pairs
    assert average_cosine_distance(opposite) == pytest.approx(0.5, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    random = torch.randn(50, 7, generator=g)
    random[[3, 9]] = 0  # zero rows have no direction and are left out
    assert average_cosine_distance(random) == pytest.approx(brute_force(random), abs=1e-9)
    assert math.isnan(average_cosine_distance(torch.zeros(4, 3)))
    with pytest.raises(ValueError, match=r"expected an \(N, D\) tensor, got shape \[4\]"):
        average_cosine_distance(torch.zeros(4))


@pytest.mark.parametrize("mode", NON_LOCAL_MODES)
def test_statistics_of_every_instantiation(project, mode):
    statistics = project.NonLocalStatistics
    torch.manual_seed(0)
    block = randomize_(NonLocalBlock(8, mode=mode), scale=0.3)
    model = torch.nn.Sequential(block)
    x = torch.randn(2, 8, 4, 5)
    with statistics(model) as stats:
        z = model(x)
    results = stats.results()["0"]
    expected_keys = {"input", "prod", "att", "output"} | ({"key", "query"} if mode != "gaussian" else set())
    assert set(results) == expected_keys and stats.num_images("0") == 2
    for name, per_image in {
        "input": [x[i].flatten(1).t() for i in range(2)],
        "output": [(z - x)[i].flatten(1).t() for i in range(2)],
        "prod": list(block.pairwise_logits(x).detach()),
        "att": list(block.pairwise_weights(x).detach()),
    }.items():
        # The block runs per image in the hook and on the batch here: float32 rounding apart.
        assert results[name] == pytest.approx(np.mean([brute_force(v) for v in per_image]), abs=1e-6), name
    if mode != "gaussian":
        assert results["key"] == pytest.approx(
            np.mean([brute_force(block.phi(x)[i].flatten(1).t()) for i in range(2)]), abs=1e-6
        )


def test_identical_positions_give_zero_distances(project):
    block = randomize_(NonLocalBlock(6, mode="gaussian"), scale=0.3)
    x = torch.randn(1, 6, 1, 1).expand(1, 6, 3, 4).contiguous()  # every position the same vector
    model = torch.nn.Sequential(block)
    with project.NonLocalStatistics(model) as stats:
        model(x)
    for name, value in stats.results()["0"].items():
        assert value == pytest.approx(0.0, abs=1e-9), name


def test_a_new_block_has_no_output_direction(project):
    """A new block's output z - x is zero (its last layer starts at zero): no direction."""
    model = torch.nn.Sequential(NonLocalBlock(6))
    with project.NonLocalStatistics(model) as stats:
        model(torch.randn(1, 6, 3, 3))
    assert math.isnan(stats.results()["0"]["output"])


def test_models_without_non_local_blocks_are_refused(project):
    with pytest.raises(ValueError, match="Sequential has no non-local block"):
        project.NonLocalStatistics(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)))


def test_analysis_on_real_images(project, shared_data, tmp_path):
    """The tiny GC-ResNet-18 Mask R-CNN with an embedded-Gaussian NL block in res3 (random but
    non-zero weights), on CamVid frames and the demo photo."""
    overrides = ["model.backbone.bottom_up.extra_context=nl", "model.backbone.bottom_up.extra_context_stage=res3"]
    cfg = LazyConfig.load(str(TINY_CONFIG))
    cfg.model.backbone.bottom_up.extra_context, cfg.model.backbone.bottom_up.extra_context_stage = "nl", "res3"
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    randomize_(model.backbone.bottom_up.res3[0].extra_context, scale=0.05)
    GCNetCheckpointer(model, save_dir=str(tmp_path)).save("nl")
    images = sorted((shared_data / "camvid" / "val").glob("*.png"))[:2] + [shared_data / "demo" / "park_bench.jpg"]
    out = tmp_path / "analysis"
    out.mkdir()
    paths = project.image_paths([str(p) for p in images], None, 100)
    overrides.append(f"train.init_checkpoint={tmp_path / 'nl.pth'}")
    predictor = Predictor(load_config(str(TINY_CONFIG), overrides), device="cpu")
    stats = project.NonLocalStatistics(predictor.model)
    project.analyze_images(predictor, stats, paths, str(out), num_figures=2)
    report = project.summarize(stats)
    block = "backbone.bottom_up.res3.0.extra_context"
    row = [line for line in project.statistics_table(report).splitlines() if line.startswith(f"| {block} ")]
    assert len(row) == 1 and "| embedded_gaussian | 3 |" in row[0]
    project.write_report(report, str(out / "statistics.json"))
    report = json.loads((out / "statistics.json").read_text())[block]
    assert report["images"] == 3 and set(report) >= {"input", "key", "query", "prod", "att", "output"}
    assert all(0 < report[s] < 1 for s in ("input", "key", "query", "prod", "att", "output"))
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == sorted(f"{p.stem}_{block}.png" for p in images[:2])
    for figure, image in zip(sorted(out.glob("*.png")), images[:2]):
        width, height = Image.open(image).size
        assert Image.open(figure).size == (3 * width, height)  # three query points side by side


def test_analysis_errors(project, shared_data, tmp_path):
    with pytest.raises(ValueError, match="^--dataset no_such_dataset: not a registered dataset$"):
        project.image_paths(None, "no_such_dataset", 100)
    with pytest.raises(ValueError, match="^--num-images must be at least 1, got 0$"):
        project.image_paths([str(shared_data / "demo" / "park_bench.jpg")], None, 0)
    predictor = Predictor(load_config(str(TINY_CONFIG), ["train.init_checkpoint="]), device="cpu")
    with pytest.raises(ValueError, match="has no non-local block"):
        project.NonLocalStatistics(predictor.model)


def test_analysis_script_says_what_is_wrong_in_one_line(tmp_path):
    missing = tmp_path / "missing.jpg"
    result = run_tool(PROJECT / "analyze.py", "--config-file", TINY_CONFIG, "--input", missing, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith(f"analyze: --input {missing}: no such file")
    assert len(result.stderr.splitlines()) == 1
