"""Datasets: COCO-format and Cityscapes loading with checks, the builtin
``balloon_{train,val}``, ``gcnet_cityscapes_fine_sem_seg_{train,val}`` (beside detectron2's
own registrations), ``voc_2012_aug_sem_seg_train``/``voc_2012_sem_seg_val``, the label maps of
detectron2's ``ade20k_sem_seg_{train,val}``, your own COCO-format datasets registered from a
config (and labelme files converted to one), a checked semantic segmentation mapper, image
reading for inference, the images a prediction run reads (folders, globs, lists, COCO
JSON), the OpenMMLab releases' test-time resize (OpenCV, mmcv's rounding), and the preparation
of the datasets' files (``prepare_dataset``)."""

from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from . import builtin  # noqa: E402,F401  (registers the builtin datasets)
from .ade20k import prepare_ade20k_labels  # noqa: E402
from .balloon import check_balloon, prepare_balloon, via_to_coco  # noqa: E402
from .builtin import require_datasets  # noqa: E402
from .cityscapes import create_train_id_labels, load_checked_cityscapes_semantic  # noqa: E402
from .coco import load_coco_instances, register_checked_coco_instances  # noqa: E402
from .custom_dataset import custom_dataset_num_classes, register_custom_dataset  # noqa: E402
from .datasets_root import datasets_root  # noqa: E402
from .image_io import ImageNamingMapper, UnreadableImageError, list_images, read_image, write_image  # noqa: E402
from .image_sources import ImageRecord, collect_images  # noqa: E402
from .pascal_voc import VOC_SEM_SEG_CLASSES, load_voc_semantic, prepare_voc_aug  # noqa: E402
from .prepare import PREPARED_DATASETS, prepare_dataset  # noqa: E402
from .sem_seg_mapper import SemSegDatasetMapper  # noqa: E402
from .transforms import OpenCVResizeShortestEdge, OpenCVResizeTransform, rescale_factor  # noqa: E402
