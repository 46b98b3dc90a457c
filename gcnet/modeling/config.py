"""yacs config keys of gcnet."""
from detectron2.config import CfgNode as CN

__all__ = ["add_gcnet_config"]


def add_gcnet_config(cfg: CN) -> None:
    """Add the MODEL.GCNET.* keys read by ``build_gcnet_resnet_backbone`` and
    ``build_gcnet_resnet_fpn_backbone`` (the other backbone options, such as depth, ResNeXt
    groups, norm, DCN and stride_in_1x1, are detectron2's MODEL.RESNETS.* keys), and the
    MODEL.GCNET_SEG.* keys of ``ContextSegmentor`` and ``ContextHead``."""
    cfg.MODEL.GCNET = CN()
    # Stages with a GC block in every residual block; the paper uses c3-c5.
    cfg.MODEL.GCNET.STAGES = ["res3", "res4", "res5"]
    # Bottleneck ratio as a fraction of the channels: 1/16 ("r16") or 1/4 ("r4").
    cfg.MODEL.GCNET.RATIO = 1 / 16
    # "att" (attention pooling) or "avg"; Table 5(f).
    cfg.MODEL.GCNET.POOLING_TYPE = "att"
    # Any of "channel_add", "channel_mul"; Table 5(f).
    cfg.MODEL.GCNET.FUSION_TYPES = ["channel_add"]
    # "linear", "bottleneck", "bottleneck_relu" or "bottleneck_ln_relu"; Table 5(d).
    cfg.MODEL.GCNET.TRANSFORM = "bottleneck_ln_relu"
    # "after1x1" or "afterAdd"; Table 5(b).
    cfg.MODEL.GCNET.POSITION = "after1x1"
    # "", "nl", "snl" or "gc": one extra block before the last residual block of
    # EXTRA_BLOCK_STAGE; Table 5(a).
    cfg.MODEL.GCNET.EXTRA_BLOCK = ""
    cfg.MODEL.GCNET.EXTRA_BLOCK_STAGE = "res4"
    # The pairwise function of an "nl" extra block (gcnet.layers.NON_LOCAL_MODES); Table 1.
    cfg.MODEL.GCNET.NL_MODE = "embedded_gaussian"
    # "basic" (7x7 conv, MODEL.RESNETS.STEM_OUT_CHANNELS) or "deep" (three 3x3 convs).
    cfg.MODEL.GCNET.STEM = "basic"
    cfg.MODEL.GCNET.STEM_CHANNELS = [32, 32, 64]
    # Dilation of res2-res5 ([1, 1, 2, 4] for output stride 8); empty: MODEL.RESNETS.RES5_DILATION.
    cfg.MODEL.GCNET.DILATIONS = []
    # The first block of a dilated stage uses half the dilation, as mmsegmentation does.
    cfg.MODEL.GCNET.CONTRACT_DILATION = False

    # Semantic segmentation (ContextSegmentor with ContextHead, Section 5.4). The head also
    # reads detectron2's MODEL.SEM_SEG_HEAD.{IN_FEATURES, NUM_CLASSES, CONVS_DIM, NORM,
    # IGNORE_VALUE, LOSS_WEIGHT}.
    cfg.MODEL.GCNET_SEG = CN()
    # "none" (FCN), "gc", "nl" or "snl"; Table 12(a).
    cfg.MODEL.GCNET_SEG.CONTEXT = "gc"
    cfg.MODEL.GCNET_SEG.GC_RATIO = 1 / 4
    cfg.MODEL.GCNET_SEG.GC_POOLING_TYPE = "att"
    cfg.MODEL.GCNET_SEG.GC_FUSION_TYPES = ["channel_add"]
    cfg.MODEL.GCNET_SEG.NL_REDUCTION = 2
    cfg.MODEL.GCNET_SEG.NL_MODE = "embedded_gaussian"
    cfg.MODEL.GCNET_SEG.ALIGN_CORNERS = False
    # Auxiliary FCN head ("" to disable): its feature, width and loss weight.
    cfg.MODEL.GCNET_SEG.AUX_IN_FEATURE = "res4"
    cfg.MODEL.GCNET_SEG.AUX_CHANNELS = 256
    cfg.MODEL.GCNET_SEG.AUX_LOSS_WEIGHT = 0.4
    # Inference: "whole" or "slide" (CROP_SIZE windows every STRIDE pixels), test-time scales
    # and flip.
    cfg.MODEL.GCNET_SEG.INFERENCE_MODE = "whole"
    cfg.MODEL.GCNET_SEG.CROP_SIZE = [769, 769]
    cfg.MODEL.GCNET_SEG.STRIDE = [513, 513]
    cfg.MODEL.GCNET_SEG.TEST_SCALES = [1.0]
    cfg.MODEL.GCNET_SEG.TEST_FLIP = False
