"""The attention-map picture both demos show (min-max scaled, colour bar, block name), the
entropy and peak of a map, and the maps recorded for one image through a Predictor."""

import math

import cv2
import numpy as np
import pytest
import torch

from gcnet.analysis import (
    COLOUR_BAR_TITLE,
    ContextAttentionRecorder,
    crop_to_image,
    draw_attention_map,
    overlay_heatmap,
    padded_input_size,
    predict_with_attention,
    short_block_name,
    summarize_attention,
)
from gcnet.engine import Predictor, load_config

from ..helpers import TINY_CONFIG

GRAY = np.full((120, 200, 3), 128, np.uint8)


def is_red(rgb):
    return rgb[0] - rgb[2] >= 100


def is_blue(rgb):
    return rgb[2] - rgb[0] >= 100


def test_near_uniform_map_is_min_max_scaled_not_a_flat_wash():
    weights = torch.full((6, 10), 1 / 60.0)
    weights[1, 2] += 1e-4  # max / min = 1.006: by the maximum alone, all red
    overlay = overlay_heatmap(GRAY, weights, opacity=1.0).astype(int)
    assert is_red(overlay[30, 50]) and is_blue(overlay[110, 190])
    uniform = overlay_heatmap(GRAY, torch.full((6, 10), 1 / 60.0), opacity=1.0).astype(int)
    assert all(is_blue(p) for p in uniform.reshape(-1, 3)[::97])


def test_attention_picture_has_the_image_size_a_colour_bar_and_the_name():
    weights = torch.zeros(6, 10)
    weights[4, 1] = 1.0
    picture = draw_attention_map(GRAY, weights, "res5.2")
    assert picture.shape == GRAY.shape and picture.dtype == np.uint8
    plain = overlay_heatmap(GRAY, weights)
    changed = np.abs(picture.astype(int) - plain.astype(int)).sum(axis=2) > 30
    # The title in the top-left corner, the colour bar at the right edge, nothing elsewhere.
    assert changed[:20, :60].sum() > 50
    assert not changed[60:110, 40:120].any()
    bar_columns = np.flatnonzero(changed[55:65, 150:].all(axis=0)) + 150
    assert len(bar_columns) >= 4 and bar_columns.max() >= 190
    column = picture[:, bar_columns[len(bar_columns) // 2]].astype(int)
    top, bottom = np.flatnonzero(changed[:, bar_columns[0]])[[0, -1]]
    assert is_red(column[top + 1]) and is_blue(column[bottom - 1])  # JET, high at the top


def test_colour_bar_is_titled_as_attention_weights():
    """The title (COLOUR_BAR_TITLE) above the largest weight, to the left of the bar: on
    pixels that the picture without it leaves alone."""
    weights = torch.zeros(6, 10)
    weights[4, 1] = 1.0
    image = np.full((240, 400, 3), 128, np.uint8)
    picture = draw_attention_map(image, weights, "res5.2")
    changed = np.abs(picture.astype(int) - overlay_heatmap(image, weights).astype(int)).sum(axis=2) > 30
    assert COLOUR_BAR_TITLE == "attention weight"
    # The bar spans rows 60-180 at the right edge; its title sits above row 60, left of the bar.
    bar_columns = np.flatnonzero(changed[110:130, 300:].all(axis=0)) + 300
    title = changed[25:60, 200 : bar_columns[0]]
    assert title.sum() > 200 and title.any(axis=0).sum() > 60  # a word, not a digit
    assert not changed[:60, bar_columns[0] :].any()  # the bar's own columns above it are left alone


def test_tiny_images_are_drawn_too():
    for height, width in [(10, 12), (40, 8), (3, 300)]:
        image = np.full((height, width, 3), 128, np.uint8)
        assert draw_attention_map(image, torch.rand(2, 3), "res4.22").shape == (height, width, 3)


def test_drawing_checks_its_inputs():
    with pytest.raises(ValueError, match="non-negative"):
        draw_attention_map(GRAY, -torch.ones(2, 2), "x")
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 image"):
        draw_attention_map(GRAY[:, :, 0], torch.ones(2, 2), "x")


def test_entropy_and_peak():
    uniform = summarize_attention(torch.full((4, 5), 0.05), (40, 50))
    assert uniform.entropy == pytest.approx(1.0)
    one_hot = torch.zeros(4, 5)
    one_hot[3, 1] = 1.0
    summary = summarize_attention(one_hot, (40, 50))
    assert summary.entropy == 0.0 and summary.peak == (15, 35)  # the centre of cell (row 3, col 1)
    two = torch.zeros(4, 5)
    two[0, 0] = two[0, 1] = 0.2  # a cropped map need not sum to 1
    assert summarize_attention(two, (40, 50)).entropy == pytest.approx(math.log(2) / math.log(20))
    assert str(summary) == "entropy 0.00, peak at x=15, y=35"
    # Three significant digits: maps that differ in the third show it.
    assert str(summarize_attention(torch.tensor([[0.5, 0.3, 0.2]]), (1, 3))).startswith("entropy 0.937, ")
    assert str(summarize_attention(torch.tensor([[0.34, 0.33, 0.33]]), (1, 3))).startswith("entropy 1.00, ")
    with pytest.raises(ValueError, match="non-negative"):
        summarize_attention(torch.zeros(4, 5), (40, 50))


def test_short_names():
    assert short_block_name("backbone.bottom_up.res5.2.context_block") == "res5.2"
    assert short_block_name("backbone.res3.3.context_block") == "res3.3"
    assert short_block_name("sem_seg_head.context") == "sem_seg_head.context"


def test_predict_with_attention_records_maps_over_the_image(shared_data):
    predictor = Predictor(load_config(TINY_CONFIG), device="cpu")
    image = cv2.imread(str(shared_data / "demo" / "park_bench.jpg"))  # 640x427, resized to 240x160
    predictions, maps = predict_with_attention(predictor, image)
    assert len(predictions["instances"]) > 0 and predictions["instances"].image_size == (427, 640)
    assert list(maps) == [
        "backbone.bottom_up.res3.1.context_block",
        "backbone.bottom_up.res4.1.context_block",
        "backbone.bottom_up.res5.1.context_block",
    ]
    assert [tuple(m.shape) for m in maps.values()] == [(20, 30), (10, 15), (5, 8)]
    # The same maps as a recorder around the model's own call, cropped to the image.
    model_input = predictor.preprocess(image)
    with ContextAttentionRecorder(predictor.model) as recorder, torch.no_grad():
        predictor.model([model_input])
    size = model_input["image"].shape[-2:]
    for name, weights in maps.items():
        expected = crop_to_image(recorder.maps[name][0], size, padded_input_size(predictor.model, size))
        torch.testing.assert_close(weights, expected)
    _, chosen = predict_with_attention(predictor, image, ["backbone.bottom_up.res4.0.context_block"])
    assert list(chosen) == ["backbone.bottom_up.res4.0.context_block"]
