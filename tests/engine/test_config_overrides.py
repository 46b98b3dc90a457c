"""Command-line overrides: unknown keys are refused with the closest valid ones."""

import pytest

from detectron2.config import LazyConfig

from gcnet.engine import apply_overrides, load_config

from ..helpers import CONFIGS, run_tool


@pytest.fixture(scope="module")
def cfg():
    return LazyConfig.load(str(CONFIGS / "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py"))


def test_known_keys_are_applied(cfg):
    cfg = apply_overrides(cfg, ["train.max_iter=7", "model.backbone.bottom_up.gc.ratio=0.25"])
    assert cfg.train.max_iter == 7 and cfg.model.backbone.bottom_up.gc.ratio == 0.25


@pytest.mark.parametrize(
    "override,closest",
    [
        ("train.max_iterr=5", "train.max_iter"),
        ("model.backbone.bottom_up.gc_ratio=0.25", "model.backbone.bottom_up.gc.ratio"),
        (
            "model.backbone.bottom_up.context_positon=afterAdd",
            "model.backbone.bottom_up.context_position, model.backbone.bottom_up.context_stages, "
            "model.backbone.bottom_up.context",
        ),
        ("train.amp.enable=True", "train.amp.enabled"),
        ("max_iter=3", "train.max_iter"),
    ],
)
def test_unknown_key_names_the_closest(cfg, override, closest):
    key = override.split("=")[0]
    with pytest.raises(ValueError) as info:
        apply_overrides(cfg, [override])
    assert str(info.value) == f"Unknown config key {key!r} in override {override!r}; closest valid keys: {closest}"


def test_override_without_value(cfg):
    with pytest.raises(ValueError, match="Override 'train.max_iter' is not of the form key=value"):
        apply_overrides(cfg, ["train.max_iter"])


def test_load_config_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError) as e:
        load_config(str(tmp_path / "missing.py"))
    assert str(e.value) == f"{tmp_path / 'missing.py'}: no such config file"


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.max_iter=abc", "train.max_iter takes an integer (the config has 90000), got 'abc'"),
        ("optimizer.lr=fast", "optimizer.lr takes a number (the config has 0.02), got 'fast'"),
        (
            "model.backbone.bottom_up.gc.ratio=abc",
            "model.backbone.bottom_up.gc.ratio takes a number (the config has 0.0625), got 'abc'",
        ),
        ("train.amp.enabled=yes", "train.amp.enabled takes true or false (the config has False), got 'yes'"),
        ("train.max_iter=2.5", "train.max_iter takes an integer (the config has 90000), got 2.5"),
    ],
)
def test_overrides_of_the_wrong_type_are_refused(override, message):
    cfg = LazyConfig.load(str(CONFIGS / "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_gc_r16_1x.py"))
    with pytest.raises(ValueError) as info:
        apply_overrides(cfg, [override])
    assert str(info.value) == f"Override {override!r}: {message}"


def test_typed_overrides_are_converted_where_exact(cfg):
    cfg = apply_overrides(cfg, ["train.max_iter=1e3", "optimizer.lr=1"])
    assert cfg.train.max_iter == 1000 and type(cfg.train.max_iter) is int and cfg.optimizer.lr == 1


def test_unparsable_override_names_the_way_to_quote_it(cfg):
    with pytest.raises(
        ValueError,
        match=r"^Override 'train.init_checkpoint=http://h/x#\?/e.pkl' cannot be parsed .*quote a value with special "
        r"characters: train.init_checkpoint='...'$",
    ):
        apply_overrides(cfg, ["train.init_checkpoint=http://h/x#?/e.pkl"])


@pytest.mark.parametrize(
    "text,message",
    [
        ("from x import (\n", "{path}, line 1: '(' was never closed"),
        (
            "import no_such_module_of_gcnet\n",
            "{path}: the config cannot be loaded (ModuleNotFoundError: No module named 'no_such_module_of_gcnet')",
        ),
    ],
)
def test_a_config_that_cannot_run_is_named(tmp_path, text, message):
    path = tmp_path / "broken.py"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        load_config(str(path))
    assert str(e.value) == message.format(path=path)


@pytest.mark.parametrize(
    "name, text", [("empty.py", ""), ("empty.yaml", ""), ("list.yaml", "- 1\n"), ("model.py", "x = dict(a=1)\n")]
)
def test_a_config_without_a_model_is_one_line(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    defined = "defines only x" if name == "model.py" else "defines nothing"
    with pytest.raises(ValueError) as e:
        load_config(str(path))
    assert str(e.value) == f"{path} {defined}: expected a LazyConfig that defines model, train (as configs/ do)"


TOOLS_WITH_CONFIGS = {
    "train_net": ["--config-file", "{config}"],
    "demo": ["--config-file", "{config}", "--input", "{photo}", "--output", "{out}"],
    "web_demo": ["--config-file", "{config}"],
    "export_model": ["--config-file", "{config}", "--format", "onnx", "--output", "{out}"],
    "analyze_model": ["--config-file", "{config}"],
}


@pytest.mark.parametrize("tool", sorted(TOOLS_WITH_CONFIGS))
def test_every_tool_says_an_empty_config_in_one_line(tool, tmp_path, shared_data):
    config = tmp_path / "empty.py"
    config.write_text("")
    args = [a.format(config=config, photo=shared_data / "demo", out=tmp_path / "out") for a in TOOLS_WITH_CONFIGS[tool]]
    result = run_tool(f"tools/{tool}.py", *args, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"{tool}: {config} defines nothing: expected a LazyConfig that defines "
        + (
            "model, train, dataloader, optimizer, lr_multiplier"
            if tool == "train_net"
            else "model, train, dataloader"
            if tool != "analyze_model"
            else "model, train"
        )
        + " (as configs/ do)"
    ]
    assert not (tmp_path / "out").exists()


def test_an_option_of_an_earlier_release_is_taken_on_the_command_line():
    """``gc_stages`` (now ``context_stages``) reaches the backbone, which says its new name
    (once per process: tests/modeling/test_resnet.py checks the warning)."""
    import warnings

    from detectron2.config import instantiate

    from ..helpers import TINY_CONFIG

    cfg = load_config(TINY_CONFIG, ["model.backbone.bottom_up.gc_stages=[res4]"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = instantiate(cfg.model)
    assert {n.split(".")[2] for n, _ in model.named_modules() if n.endswith("context_block")} == {"res4"}
    with pytest.raises(ValueError, match="Unknown config key 'model.backbone.gc_stages'"):
        load_config(TINY_CONFIG, ["model.backbone.gc_stages=[res4]"])  # not where the option lives
