"""Single-image inference from a LazyConfig, the counterpart of detectron2's
``DefaultPredictor`` (which takes yacs configs only), on the inference fast path
(:mod:`.inference`)."""

import copy
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

import detectron2.data.transforms as T
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

from .checkpoint import GCNetCheckpointer
from .config import inference_device
from .inference import InferenceOptions, prepare_for_inference

__all__ = ["CALIBRATION_SIZE", "TestPreprocessor", "Predictor"]

logger = logging.getLogger(__name__)

# The (height, width) of the synthetic image on which "auto" inference options are measured.
CALIBRATION_SIZE = (384, 576)


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
            raise ValueError(f"dataloader.test.mapper.image_format must be 'RGB' or 'BGR', got {self.input_format!r}")
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
        inference: the fast path (folded norms, layout, compilation, bfloat16); default: the
            config's ``train.inference`` (:meth:`InferenceOptions.from_config`). Options left
            "auto" are measured once per device and model architecture (on a synthetic image
            of :data:`CALIBRATION_SIZE`), and the choice kept (:mod:`gcnet.engine.calibration`).

    Attributes:
        model: the model, in eval mode, with its BatchNorms folded unless ``inference`` says not
            to (its state dict then lacks them: load weights into a model of the config).
        setup: what the fast path did (:class:`~gcnet.engine.inference.InferenceSetup`).
        metadata: the ``MetadataCatalog`` entry of the first test dataset (class names and
            colours for visualisation).
    """

    def __init__(
        self,
        cfg,
        device: Optional[str] = None,
        score_threshold: float = 0.0,
        inference: Optional[InferenceOptions] = None,
    ):
        self.cfg = copy.deepcopy(cfg)
        self.score_threshold = score_threshold
        self.inference = inference or InferenceOptions.from_config(self.cfg)
        self.preprocessor = TestPreprocessor(self.cfg)
        names = instantiate(self.cfg.dataloader.test.dataset.names)  # a LazyCall may register them
        self.metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])

        self.device = inference_device(self.cfg, device)
        self.inference.check_device(self.device)
        self.model = instantiate(self.cfg.model).to(self.device).eval()
        if self.cfg.train.init_checkpoint:
            way_out = "give the weights of a model trained with this config (train.init_checkpoint=...)"
            GCNetCheckpointer(self.model).load(self.cfg.train.init_checkpoint, fit="all", way_out=way_out)
        self.setup = prepare_for_inference(self.model, self.inference, self.device, run=self._calibration_run)
        logger.info(self.setup.describe())

    def _calibration_run(self, model: torch.nn.Module):
        """The model on a synthetic image of :data:`CALIBRATION_SIZE`, without the pasting of a
        detector's masks (which the layout does not change)."""
        height, width = CALIBRATION_SIZE
        generator = torch.Generator().manual_seed(0)
        image = torch.randint(0, 256, (3, height, width), generator=generator).float().to(self.device)
        inputs = [{"image": image, "height": height, "width": width}]
        return model.inference(inputs, do_postprocess=False) if isinstance(model, GeneralizedRCNN) else model(inputs)

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
        """The model's output for one preprocessed input (:meth:`preprocess`), in float32, also
        under bfloat16 autocast: ``{"sem_seg": ...}``, or a detector's ``{"instances": ...,
        "highest_score": ...}``, its instances below ``score_threshold`` dropped before their
        masks are pasted and ``highest_score`` the highest of all it found (None for none)."""
        return self.predict_batch([inputs])[0]

    @torch.no_grad()
    def predict_batch(self, inputs: List[Dict]) -> List[Dict]:
        """:meth:`predict` for a batch of preprocessed inputs (padded to the largest one, as a
        test loader's batch is)."""
        for x in inputs:
            x["image"] = x["image"].to(self.device, non_blocking=True)
        with self.setup.autocast():
            if not isinstance(self.model, GeneralizedRCNN):
                return [{k: v.float() for k, v in output.items()} for output in self.model(inputs)]
            batch = self.model.inference(inputs, do_postprocess=False)
        return [self._postprocess(_float32(instances), x) for instances, x in zip(batch, inputs)]

    def _postprocess(self, instances: Instances, inputs: Dict) -> Dict:
        """The instances at the image's size, and the highest score of all the model found
        (None for none), also when ``score_threshold`` dropped them all."""
        highest = float(instances.scores.max()) if len(instances) else None
        instances = instances[instances.scores >= self.score_threshold]
        if hasattr(self.model, "postprocess"):  # a detector with its own rules (gcnet.modeling.MMDetRCNN)
            instances = self.model.postprocess(instances, inputs)
        else:
            instances = detector_postprocess(instances, inputs["height"], inputs["width"])
        return {"instances": instances, "highest_score": highest}

    @torch.no_grad()
    def __call__(self, original_image: np.ndarray, output_size: Optional[Tuple[int, int]] = None) -> Dict:
        """Predictions for one (H, W, 3) BGR uint8 image (as ``cv2.imread`` or
        :func:`gcnet.data.read_image` return), at its original size or ``output_size``
        (:meth:`preprocess`)."""
        return self.predict(self.preprocess(original_image, output_size))


def _float32(instances: Instances) -> Instances:
    """The instances with every floating-point field (boxes included) in float32."""
    for name, value in instances.get_fields().items():
        tensor = getattr(value, "tensor", value)
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.dtype != torch.float32:
            instances.set(name, type(value)(tensor.float()) if tensor is not value else tensor.float())
    return instances
