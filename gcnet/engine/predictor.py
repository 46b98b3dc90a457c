"""Single-image inference from a LazyConfig, the counterpart of detectron2's
``DefaultPredictor`` (which takes yacs configs only)."""
import copy
from typing import Dict, Optional, Tuple

import numpy as np
import torch

import detectron2.data.transforms as T
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess

from .checkpoint import GCNetCheckpointer
from .config import default_device

__all__ = ["TestPreprocessor", "Predictor"]


class TestPreprocessor:
    """What a LazyConfig's test loader does to one image: the test-time augmentations (the
    resize) and the input format ("RGB"/"BGR") of ``cfg.dataloader.test.mapper``.

    Calling it on an (H, W, 3) BGR uint8 image returns the model input
    ``{"image": (3, h, w) float32 tensor, "height": H, "width": W}``.
    """

    def __init__(self, cfg):
        mapper = cfg.dataloader.test.mapper
        self.input_format = mapper.image_format
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(
                f"dataloader.test.mapper.image_format must be 'RGB' or 'BGR', got {self.input_format!r}"
            )
        self.augmentations = T.AugmentationList(list(instantiate(mapper.augmentations)))

    def __call__(self, original_image: np.ndarray) -> Dict:
        if original_image.ndim != 3 or original_image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR image, got shape {original_image.shape}")
        if self.input_format == "RGB":
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(original_image))
        self.augmentations(aug_input)
        image = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        return {"image": image, "height": height, "width": width}


class Predictor:
    """Build the model of a LazyConfig, load its weights, and run it on one image at a time.

    What the config's test loader does to an image (:class:`TestPreprocessor`), the predictor
    does too, and it returns the model's output for the original size, as detectron2's
    ``DefaultPredictor`` does for yacs configs:

    * instance segmentation: ``{"instances": Instances}`` (boxes, scores, classes, masks);
    * semantic segmentation: ``{"sem_seg": (K, H, W) class probabilities}``.

    Args:
        cfg: a LazyConfig with ``model``, ``dataloader.test`` and ``train.init_checkpoint``
            (a path, URL, ``detectron2://`` or ``gcnet://`` name; "" for no weights).
        device: where the model runs (default: the config's ``train.device``, which the
            configs set to CUDA when available, else the CPU).
        score_threshold: a detector keeps only the instances that score at least this, before
            their masks are pasted at the image's size: the memory of the pasting grows with
            the kept instances, not with the detector's limit (100 per image) times the area.

    Attributes:
        model: the model, in eval mode.
        metadata: the ``MetadataCatalog`` entry of the first test dataset (class names and
            colours for visualisation).
    """

    def __init__(self, cfg, device: Optional[str] = None, score_threshold: float = 0.0):
        self.cfg = copy.deepcopy(cfg)
        self.score_threshold = score_threshold
        self.preprocessor = TestPreprocessor(self.cfg)
        names = instantiate(self.cfg.dataloader.test.dataset.names)  # a LazyCall may register them
        self.metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])

        self.device = torch.device(device or self.cfg.train.get("device") or default_device())
        self.model = instantiate(self.cfg.model).to(self.device).eval()
        if self.cfg.train.init_checkpoint:
            way_out = "give the weights of a model trained with this config (train.init_checkpoint=...)"
            GCNetCheckpointer(self.model).load(self.cfg.train.init_checkpoint, fit="all", way_out=way_out)

    def preprocess(self, original_image: np.ndarray, output_size: Optional[Tuple[int, int]] = None) -> Dict:
        """The model input of one (H, W, 3) BGR uint8 image, on the model's device.

        Args:
            output_size: the (height, width) the predictions are given at (default: the
                image's); a smaller one keeps the pasted masks (or class probabilities) of a
                large image small, as when it is drawn on a scaled canvas.
        """
        inputs = self.preprocessor(original_image)
        inputs["image"] = inputs["image"].to(self.device)
        if output_size is not None:
            inputs["height"], inputs["width"] = (int(s) for s in output_size)
        return inputs

    def predict(self, inputs: Dict) -> Dict:
        """The model's output for one preprocessed input (:meth:`preprocess`), with a
        detector's instances below ``score_threshold`` dropped before their masks are pasted."""
        if not isinstance(self.model, GeneralizedRCNN):
            return self.model([inputs])[0]
        instances = self.model.inference([inputs], do_postprocess=False)[0]
        instances = instances[instances.scores >= self.score_threshold]
        if hasattr(self.model, "postprocess"):  # a detector with its own rules (gcnet.modeling.MMDetRCNN)
            return {"instances": self.model.postprocess(instances, inputs)}
        return {"instances": detector_postprocess(instances, inputs["height"], inputs["width"])}

    @torch.no_grad()
    def __call__(self, original_image: np.ndarray, output_size: Optional[Tuple[int, int]] = None) -> Dict:
        """Predictions for one (H, W, 3) BGR uint8 image (as ``cv2.imread`` or
        :func:`gcnet.data.read_image` return), at its original size or ``output_size``
        (:meth:`preprocess`)."""
        return self.predict(self.preprocess(original_image, output_size))
