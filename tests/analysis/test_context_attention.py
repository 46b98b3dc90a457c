"""The GC attention maps the demo draws (Fig. 5): recorded from the blocks, non-negative, one
distribution over the positions per image and block, and drawn at the image's size."""

import numpy as np
import pytest
import torch

from gcnet.analysis import ContextAttentionRecorder, default_context_blocks, find_context_blocks, overlay_heatmap
from gcnet.modeling import build_gcnet_resnet

from ..helpers import TINY_CONFIG


def test_default_blocks_are_the_last_of_each_stage(gc_resnet18):
    assert default_context_blocks(gc_resnet18) == [
        "res3.1.context_block",
        "res4.1.context_block",
        "res5.1.context_block",
    ]


def test_recorded_maps_are_distributions_over_the_positions(gc_resnet18):
    x = torch.randn(2, 3, 64, 96)
    blocks = find_context_blocks(gc_resnet18, ["res4.*", "*res5.1.*"])
    assert blocks == ["res4.0.context_block", "res4.1.context_block", "res5.1.context_block"]
    with ContextAttentionRecorder(gc_resnet18, blocks) as recorder, torch.no_grad():
        features = gc_resnet18(x)
    assert set(recorder.maps) == set(blocks)
    for name, maps in recorder.maps.items():
        stage = name.split(".")[0]
        assert maps.shape == (2, *features[stage].shape[-2:])
        assert (maps >= 0).all()
        torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(2))
        assert maps.std() > 0  # attention, not the uniform 1/N_p of average pooling
    # The maps are the pooling weights of the block's own input.
    block = dict(gc_resnet18.named_modules())["res5.1.context_block"]
    res5_input = {}
    handle = block.register_forward_hook(lambda m, i, o: res5_input.update(x=i[0].clone()))
    with torch.no_grad():
        gc_resnet18(x)
    handle.remove()
    torch.testing.assert_close(recorder.maps["res5.1.context_block"], block.attention_map(res5_input["x"]))
    # Hooks are gone after the context.
    recorder.maps.clear()
    with torch.no_grad():
        gc_resnet18(x)
    assert not recorder.maps


def test_selection_errors(gc_resnet18):
    with pytest.raises(ValueError, match=r"No GC block matches \['\*res2\*'\]; the model's GC blocks are: res3.0"):
        find_context_blocks(gc_resnet18, ["*res2*"])
    with pytest.raises(ValueError, match=r"Not GC blocks of the model: \['res2.0'\]"):
        ContextAttentionRecorder(gc_resnet18, ["res2.0"])
    plain = build_gcnet_resnet(18, norm="BN")
    assert default_context_blocks(plain) == []
    with pytest.raises(ValueError, match="no GC block to record"):
        ContextAttentionRecorder(plain)


def test_overlay_has_the_image_size_and_peaks_where_the_weight_does():
    image = np.full((40, 60, 3), 128, np.uint8)
    weights = torch.zeros(4, 6)
    weights[1, 4] = 1.0
    overlay = overlay_heatmap(image, weights, opacity=1.0)
    assert overlay.shape == (40, 60, 3) and overlay.dtype == np.uint8
    # JET: the peak is (dark) red, zero weight dark blue.
    peak, cold = overlay[15, 45].astype(int), overlay[35, 5].astype(int)
    assert peak[0] - peak[2] >= 100 and cold[2] - cold[0] >= 100
    with pytest.raises(ValueError, match="non-negative"):
        overlay_heatmap(image, -weights)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 image"):
        overlay_heatmap(image.astype(np.float32), weights)


def test_maps_are_cropped_to_the_image_not_its_padding():
    from detectron2.config import LazyConfig, instantiate

    from gcnet.analysis import crop_to_image, padded_input_size

    model = instantiate(LazyConfig.load(TINY_CONFIG).model)
    assert padded_input_size(model, (160, 241)) == (160, 256)  # FPN: multiples of 32
    assert padded_input_size(model.backbone, (160, 241)) == (160, 256)  # a backbone by itself
    assert padded_input_size(torch.nn.Conv2d(1, 1, 1), (160, 241)) == (160, 241)
    weights = torch.arange(5 * 8.0).reshape(5, 8)  # res5 (stride 32) of the padded 160x256 input
    assert torch.equal(crop_to_image(weights, (160, 241), (160, 256)), weights[:, :8])
    assert torch.equal(crop_to_image(weights, (100, 200), (160, 256)), weights[:4, :7])
