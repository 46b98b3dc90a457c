"""The inference fast path (gcnet.engine.inference, gcnet.engine.calibration): the options of
train.inference and the tools' flags reach the model; folded predictions equal unfolded ones on
the tests' photos; "auto" measures once per device and model, and keeps its choice."""

import argparse
import dataclasses
import json

import pytest
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import FrozenBatchNorm2d

from gcnet.analysis import predict_with_attention
from gcnet.data import read_image
from gcnet.engine import GCNetCheckpointer, InferenceOptions, Predictor, calibration, inference
from gcnet.engine.defaults import check_before_building, prepare_for_evaluation
from gcnet.utils.argument_parser import add_inference_arguments, inference_overrides

from ..helpers import TINY_CONFIG, randomize_, randomize_norms_

OFF = InferenceOptions(channels_last=False, compile=False)


@pytest.fixture(scope="module")
def photos(shared_data):
    paths = [shared_data / "demo" / "park_bench.jpg", shared_data / "balloon" / "val" / "24631331976_defa3bb61f_k.jpg"]
    return [read_image(str(p), format="BGR") for p in paths]


@pytest.fixture(scope="module")
def trained_config(tmp_path_factory):
    """The tiny config with weights whose norms and GC blocks are random."""
    cfg = LazyConfig.load(str(TINY_CONFIG))
    torch.manual_seed(1)
    model = randomize_norms_(randomize_(instantiate(cfg.model), scale=0.05))
    folder = tmp_path_factory.mktemp("trained")
    GCNetCheckpointer(model, save_dir=str(folder)).save("trained")
    cfg.train.init_checkpoint = str(folder / "trained.pth")
    return cfg


def test_options_come_from_the_config_and_the_flags():
    cfg = LazyConfig.load(str(TINY_CONFIG))
    assert InferenceOptions.from_config(cfg) == InferenceOptions() == InferenceOptions(True, "auto", "auto", False)
    cfg.train.inference.channels_last = False
    del cfg.train.inference.compile  # a run's config of an earlier release: the default
    overridden = InferenceOptions.from_config(cfg, fold_norm=False, bfloat16=None)
    assert overridden == InferenceOptions(False, False, "auto", False)
    parser = argparse.ArgumentParser()
    add_inference_arguments(parser)
    args = parser.parse_args(["--no-fold-norm", "--channels-last", "on", "--compile", "off", "--bfloat16"])
    assert inference_overrides(args) == dict(fold_norm=False, channels_last=True, compile=False, bfloat16=True)
    none_given = dict(fold_norm=None, channels_last=None, compile=None, bfloat16=None)
    assert inference_overrides(parser.parse_args([])) == none_given


def test_bad_options_are_named():
    cfg = LazyConfig.load(str(TINY_CONFIG))
    cfg.train.inference.channels_last = "maybe"
    with pytest.raises(ValueError, match=r"^train.inference.channels_last must be true, false or 'auto', got 'maybe'$"):
        Predictor(cfg, device="cpu")
    cfg.train.inference.channels_last = "auto"
    cfg.train.inference.fold = True
    with pytest.raises(ValueError, match=r"^train.inference has no key 'fold'; its keys are fold_norm, channels_last"):
        InferenceOptions.from_config(cfg)
    with pytest.raises(ValueError, match=r"^train.inference.bfloat16 must be true or false, got 'auto'$"):
        InferenceOptions(bfloat16="auto")
    cfg.train.inference = True
    with pytest.raises(ValueError, match=r"^train.inference must be a dict with the keys fold_norm, .*, got True$"):
        InferenceOptions.from_config(cfg)


def test_folded_predictions_equal_unfolded_ones_on_the_photos(trained_config, photos):
    folded = Predictor(trained_config, device="cpu", inference=OFF)
    unfolded = Predictor(trained_config, device="cpu", inference=dataclasses.replace(OFF, fold_norm=False))
    assert folded.setup.folded_norms == 20 and unfolded.setup.folded_norms == 0
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in folded.model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in unfolded.model.modules()) == 20
    for photo in photos:  # the balloon photo's masks pasted at a quarter of its size
        size = None if photo.shape[0] < 1000 else (photo.shape[0] // 4, photo.shape[1] // 4)
        expected, found = unfolded(photo, size)["instances"], folded(photo, size)["instances"]
        assert len(found) == len(expected) > 0 and torch.equal(found.pred_classes, expected.pred_classes)
        scale = expected.pred_boxes.tensor.abs().max()
        assert (found.pred_boxes.tensor - expected.pred_boxes.tensor).abs().max() <= 1e-5 * scale
        assert (found.scores - expected.scores).abs().max() <= 1e-5 * expected.scores.max()
        assert (found.pred_masks != expected.pred_masks).float().mean() < 1e-4


def test_layout_compile_and_bfloat16_reach_the_model(trained_config, photos, monkeypatch):
    compiled = []
    monkeypatch.setattr(nn.Module, "compile", lambda module, **kwargs: compiled.append((module, kwargs)))
    options = InferenceOptions(channels_last=True, compile=True, bfloat16=True)
    predictor = Predictor(trained_config, device="cpu", inference=options)
    model = predictor.model
    assert model.backbone.bottom_up.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    targets = [model.backbone, model.proposal_generator.rpn_head, model.roi_heads.box_head]
    assert [m for m, _ in compiled] == targets and compiled[0][1] == {"options": {"freezing": True}}
    assert predictor.setup.describe() == "Inference: 20 BatchNorms folded, channels_last, compiled, bfloat16 autocast"
    instances = predictor(photos[0])["instances"]
    assert instances.scores.dtype == instances.pred_boxes.tensor.dtype == torch.float32


def test_auto_measures_once_and_keeps_the_choice(trained_config, tmp_path, monkeypatch):
    monkeypatch.setenv(calibration.CALIBRATION_ENV, str(tmp_path / "choices.json"))
    measured = []

    def measure(candidates, device, rounds=3):
        measured.append(sorted(candidates))
        for run in candidates.values():
            run()
        return {"contiguous": 1.0, "channels_last": 0.9}

    monkeypatch.setattr(calibration, "measure", measure)
    predictor = Predictor(trained_config, device="cpu", inference=InferenceOptions(compile="auto"))
    assert measured == [["channels_last", "contiguous"]]  # a CPU is never compiled by "auto"
    assert predictor.setup.channels_last and not predictor.setup.compiled
    assert predictor.setup.measured == {"contiguous": 1.0, "channels_last": 0.9}
    ((key, entry),) = json.loads((tmp_path / "choices.json").read_text()).items()
    assert key.startswith("cpu ") and f"{torch.get_num_threads()} threads|torch {torch.__version__}|float32|" in key
    assert entry == {"choice": "channels_last", "seconds": {"channels_last": 0.9, "contiguous": 1.0}}
    again = Predictor(trained_config, device="cpu")
    assert len(measured) == 1 and again.setup.channels_last and again.setup.measured is None


def test_a_choice_within_the_margin_keeps_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv(calibration.CALIBRATION_ENV, str(tmp_path / "choices.json"))
    monkeypatch.setattr(calibration, "measure", lambda candidates, device, rounds=3: {"a": 1.0, "b": 0.96})
    built = []

    def make():
        built.append(1)
        return {"a": None, "b": None}

    assert calibration.choose("k", ["a", "b"], make, "a", torch.device("cpu")) == ("a", {"a": 1.0, "b": 0.96})
    assert calibration.choose("k", ["a", "b"], make, "a", torch.device("cpu")) == ("a", None)
    assert len(built) == 1  # a kept choice builds no candidate
    monkeypatch.setattr(calibration, "measure", lambda candidates, device, rounds=3: {"a": 1.0, "b": 0.5})
    for unreadable in ("not json", '{"k": {"choice": []}}', '{"k": {"choice": "c"}}', "[" * 100000):
        (tmp_path / "choices.json").write_text(unreadable)  # measured again, and rewritten
        assert calibration.choose("k", ["a", "b"], make, "a", torch.device("cpu"))[0] == "b"
        assert json.loads((tmp_path / "choices.json").read_text())["k"]["choice"] == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["choices.json"]


def test_measure_times_every_candidate_interleaved():
    calls = []
    candidates = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    seconds = calibration.measure(candidates, torch.device("cpu"), rounds=2)
    assert calls == ["a", "b"] * 3 and set(seconds) == {"a", "b"} and all(0 <= s < 1 for s in seconds.values())


def test_attention_maps_are_recorded_from_compiled_models(trained_config, photos):
    predictor = Predictor(trained_config, device="cpu", inference=OFF)
    expected = predict_with_attention(predictor, photos[0])[1]
    predictor.model.backbone.compile(backend="eager")
    predictor(photos[0])  # compiled without the recorder's hooks
    predictions, maps = predict_with_attention(predictor, photos[0])
    assert maps.keys() == expected.keys() and len(maps) == 3
    for name, weights in maps.items():
        torch.testing.assert_close(weights, expected[name])


def test_native_bfloat16_reads_the_cpu_flags(tmp_path):
    flags = {"amx": "fpu avx512f amx_bf16 amx_tile", "avx512": "fpu avx512f avx512_bf16", "none": "fpu avx2 avx512f"}
    for name, line in flags.items():
        (tmp_path / name).write_text(f"processor\t: 0\nflags\t\t: {line}\n")
    found = {name: inference.native_bfloat16(torch.device("cpu"), str(tmp_path / name)) for name in flags}
    assert found == {"amx": True, "avx512": True, "none": False}
    assert not inference.native_bfloat16(torch.device("cpu"), str(tmp_path / "missing"))


def test_compile_targets_are_the_dense_parts():
    model = instantiate(LazyConfig.load(str(TINY_CONFIG)).model)
    names = [type(m).__name__ for m in inference.compile_targets(model)]
    assert names == ["FPN", "StandardRPNHead", "FastRCNNConvFCHead"]


def test_evaluation_folds_unless_the_config_says_not_to():
    cfg = LazyConfig.load(str(TINY_CONFIG))
    model = instantiate(cfg.model)
    assert prepare_for_evaluation(cfg, model) == 20 and not model.training
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    cfg.train.inference.fold_norm = False
    model = instantiate(cfg.model)
    assert prepare_for_evaluation(cfg, model) == 0 and not model.training


def test_train_net_checks_the_inference_options_before_building(tmp_path):
    """--eval-only folds with them: a bad value stops the run before the model is built."""
    cfg = LazyConfig.load(str(TINY_CONFIG))
    cfg.train.output_dir = str(tmp_path / "run")
    cfg.train.inference.channels_last = "maybe"
    args = argparse.Namespace(eval_only=True, resume=False, opts=[], restart_schedule=False)
    with pytest.raises(ValueError, match=r"^train.inference.channels_last must be true, false or 'auto', got 'maybe'$"):
        check_before_building(args, cfg)
    assert not (tmp_path / "run").exists()
