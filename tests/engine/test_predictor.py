"""gcnet.engine.Predictor: the LazyConfig counterpart of DefaultPredictor. Its outputs are those
of a direct model call on the image the config's test loader would make."""

import numpy as np
import pytest
import torch

import detectron2.data.transforms as T
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import mask_ops

from gcnet.data import read_image
from gcnet.engine import GCNetCheckpointer, InferenceOptions, Predictor

from ..helpers import CONFIGS, TINY_CONFIG, randomize_

SEGMENTATION = CONFIGS / "Cityscapes-SemanticSegmentation" / "mmseg_gcnet_R_50_D8_512x1024_40k.py"


@pytest.fixture(scope="module")
def photo(shared_data):
    return read_image(str(shared_data / "demo" / "park_bench.jpg"), format="BGR")


def test_detection_outputs_equal_a_direct_model_call(photo):
    cfg = LazyConfig.load(str(TINY_CONFIG))
    predictor = Predictor(cfg, device="cpu")
    predicted = predictor(photo)["instances"]
    # What the test loader does: RGB, shorter side 160 (longer at most 256).
    rgb = photo[:, :, ::-1]
    resized = T.ResizeShortestEdge(160, 256).get_transform(rgb).apply_image(rgb)
    assert resized.shape[:2] == (160, 240)
    image = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
    with torch.no_grad():
        direct = predictor.model([{"image": image, "height": 427, "width": 640}])[0]["instances"]
    assert predicted.image_size == (427, 640) and len(predicted) > 0
    torch.testing.assert_close(predicted.pred_boxes.tensor, direct.pred_boxes.tensor)
    torch.testing.assert_close(predicted.scores, direct.scores)
    assert torch.equal(predicted.pred_classes, direct.pred_classes)
    assert torch.equal(predicted.pred_masks, direct.pred_masks)
    assert predictor.metadata.thing_classes == ["balloon"]
    assert not predictor.model.training


def test_score_threshold_drops_instances_before_their_masks_are_pasted(photo, monkeypatch):
    """The kept instances equal those of the unthresholded output, and only they are pasted."""
    predictor = Predictor(LazyConfig.load(str(TINY_CONFIG)), device="cpu")
    paste, pasted = mask_ops.paste_masks_in_image, []
    monkeypatch.setattr(
        mask_ops, "paste_masks_in_image", lambda masks, *a, **k: pasted.append(len(masks)) or paste(masks, *a, **k)
    )
    everything = predictor(photo)["instances"]
    predictor.score_threshold = threshold = float(everything.scores.median())
    kept = predictor(photo)["instances"]
    keep = everything.scores >= threshold
    assert 0 < len(kept) < len(everything) and pasted == [len(everything), len(kept)]
    torch.testing.assert_close(kept.scores, everything.scores[keep])
    torch.testing.assert_close(kept.pred_boxes.tensor, everything.pred_boxes.tensor[keep])
    assert torch.equal(kept.pred_masks, everything.pred_masks[keep]) and kept.image_size == (427, 640)


def test_output_size_gives_the_predictions_at_that_size(photo):
    """The same detections as at the photo's size, boxes scaled, masks pasted at the smaller
    size (what a large photo drawn on a scaled canvas needs): a direct call with that size."""
    predictor = Predictor(LazyConfig.load(str(TINY_CONFIG)), device="cpu")
    full = predictor(photo)["instances"]
    small = predictor(photo, output_size=(213, 320))["instances"]
    assert small.image_size == (213, 320) and small.pred_masks.shape == (len(full), 213, 320)
    torch.testing.assert_close(small.scores, full.scores)
    torch.testing.assert_close(small.pred_boxes.tensor * 2, full.pred_boxes.tensor, rtol=0, atol=2.0)
    model_input = predictor.preprocess(photo, output_size=(213, 320))
    assert (model_input["height"], model_input["width"]) == (213, 320)
    with torch.no_grad():
        direct = predictor.model([model_input])[0]["instances"]
    assert torch.equal(small.pred_masks, direct.pred_masks)


def test_semantic_segmentation_outputs_equal_a_direct_model_call(shared_data):
    cfg = LazyConfig.load(str(SEGMENTATION))
    cfg.train.init_checkpoint = ""
    cfg.dataloader.test.mapper.augmentations = []  # the image at its size (the config fits it in 2048x1024)
    cfg.model.backbone.depth = 50
    cfg.model.sem_seg_head.channels = 32
    cfg.model.auxiliary_head.channels = 16
    predictor = Predictor(cfg, device="cpu")
    randomize_(predictor.model.sem_seg_head, scale=0.1)
    bgr = read_image(str(shared_data / "camvid" / "val" / "0016E5_07959.png"), format="BGR")
    probabilities = predictor(bgr)["sem_seg"]
    assert probabilities.shape == (19, 360, 480)
    torch.testing.assert_close(probabilities.sum(dim=0), torch.ones(360, 480))
    image = torch.as_tensor(bgr[:, :, ::-1].astype("float32").transpose(2, 0, 1))  # RGB, no resize
    with torch.no_grad():
        direct = predictor.model([{"image": image, "height": 360, "width": 480}])[0]["sem_seg"]
    torch.testing.assert_close(probabilities, direct)
    assert len(predictor.metadata.stuff_classes) == 19


def test_bgr_models_get_bgr_input(photo):
    cfg = LazyConfig.load(str(TINY_CONFIG))
    cfg.dataloader.test.mapper.image_format = "BGR"
    predictor = Predictor(cfg, device="cpu")
    model_input = predictor.preprocess(photo)
    resized = T.ResizeShortestEdge(160, 256).get_transform(photo).apply_image(photo)
    assert torch.equal(model_input["image"], torch.as_tensor(resized.astype("float32").transpose(2, 0, 1)))


def test_loads_the_config_checkpoint(photo, tmp_path):
    cfg = LazyConfig.load(str(TINY_CONFIG))
    torch.manual_seed(1)
    trained = randomize_(instantiate(cfg.model), scale=0.05)
    GCNetCheckpointer(trained, save_dir=str(tmp_path)).save("trained")
    cfg.train.init_checkpoint = str(tmp_path / "trained.pth")
    as_trained = InferenceOptions(fold_norm=False, channels_last=False, compile=False)
    predictor = Predictor(cfg, device="cpu", inference=as_trained)
    for name, value in trained.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[name], value), name


@pytest.mark.parametrize("image", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)])
def test_rejects_images_that_are_not_bgr(image):
    predictor = Predictor(LazyConfig.load(str(TINY_CONFIG)), device="cpu")
    with pytest.raises(ValueError, match=r"^expected an \(H, W, 3\) BGR image, got shape"):
        predictor(image)
