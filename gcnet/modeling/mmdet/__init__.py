"""mmdetection's test-time rules as detectron2 components, for the zoo's converted models:
mmdetection's box coder with its two-sided clamp, RoI level rule and post-processing (all
versions), and version 1's pixel convention (anchors, proposals, RoI pooling, NMS in the
original image, mask pasting), with which the original GCNet code, the code of the paper's COCO
experiments ("implemented ... based on open source mmdetection", Section 5.1), tests. A zoo
config selects them with ``config_overrides`` (``model_zoo/manifest.yaml``); detectron2's own
rules stay the default of gcnet's configs."""

from .anchors import MMDetV1AnchorGenerator
from .boxes import MMDetBox2BoxTransform, MMDetV1Box2BoxTransform, clip_boxes, pixel_batched_nms, pixel_nms
from .fast_rcnn import SCALE_FACTOR_FIELD, MMDetV1FastRCNNOutputLayers
from .poolers import MMDetROIPooler, MMDetV1ROIPooler, roi_levels
from .rcnn import MMDET_V1_TEST_SCALE, MMDetRCNN, MMDetV1RCNN, paste_pixel_masks
from .rpn import MMDetV1RPN
