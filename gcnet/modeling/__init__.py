"""GCNet models for detectron2: GC-ResNet/ResNeXt backbones (``BACKBONE_REGISTRY``), the
semantic segmentation head (``SEM_SEG_HEADS_REGISTRY``) and model (``META_ARCH_REGISTRY``)
of the Cityscapes experiments, the deformable conv and SyncBN they use, the defaults configs
derive from, the yacs keys, and mmdetection's test-time rules for the zoo's converted models."""

from gcnet._detectron2 import require_detectron2

require_detectron2(__name__)

from .backbone import (  # noqa: E402
    CONTEXT_POSITIONS,
    GC_STAGES,
    STAGE_NAMES,
    GCBasicBlock,
    GCBottleneckBlock,
    build_gcnet_resnet,
    build_gcnet_resnet_backbone,
    build_gcnet_resnet_fpn_backbone,
    gcnet_resnet_defaults,
    make_gcnet_resnet_stages,
)
from .backbone.timm_backbone import TimmBackbone, add_timm_backbone_config  # noqa: E402
from .config import add_gcnet_config  # noqa: E402
from .defaults import option_defaults  # noqa: E402
from .deform_conv import DeformConv2d  # noqa: E402
from .fold_norm import fold_batch_norms  # noqa: E402
from .mmdet import (  # noqa: E402
    MMDetBox2BoxTransform,
    MMDetRCNN,
    MMDetROIPooler,
    MMDetV1AnchorGenerator,
    MMDetV1Box2BoxTransform,
    MMDetV1FastRCNNOutputLayers,
    MMDetV1RCNN,
    MMDetV1ROIPooler,
    MMDetV1RPN,
)
from .norm import SyncBatchNorm, get_norm, resolve_norm  # noqa: E402
from .roi_heads import MultiMaskCascadeROIHeads  # noqa: E402
from .sem_seg import ContextHead, ContextSegmentor  # noqa: E402
