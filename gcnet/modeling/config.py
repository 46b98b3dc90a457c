"""yacs config keys of gcnet."""

from detectron2.config import CfgNode as CN

from .backbone.resnet import RENAMED_YACS_KEYS, YACS_KEYS, gcnet_resnet_defaults
from .defaults import option_defaults, yacs_defaults
from .sem_seg import head, segmentor

__all__ = ["add_gcnet_config"]


def add_gcnet_config(cfg: CN) -> None:
    """Add the MODEL.GCNET.* keys read by ``build_gcnet_resnet_backbone`` and
    ``build_gcnet_resnet_fpn_backbone`` (the other backbone options, such as depth, ResNeXt
    groups, norm, DCN and stride_in_1x1, are detectron2's MODEL.RESNETS.* keys), and the
    MODEL.GCNET_SEG.* keys of ``ContextSegmentor`` and ``ContextHead``.

    Each key sets one option (the tables ``YACS_KEYS`` of ``gcnet.modeling.backbone.resnet``,
    ``gcnet.modeling.sem_seg.head`` and ``.segmentor``) and defaults to that option's default,
    with two exceptions: MODEL.GCNET.CONTEXT is "gc" (a GC-ResNet: GC blocks in c3-c5), and an
    empty MODEL.GCNET.DILATIONS takes the dilation of res5 from MODEL.RESNETS.RES5_DILATION.
    The keys renamed since (``RENAMED_YACS_KEYS``: MODEL.GCNET.STAGES, RATIO, ...) are there
    too, None, and set their new key where a file sets them.
    """
    cfg.MODEL.GCNET = CN(yacs_defaults(YACS_KEYS, gcnet_resnet_defaults()))
    cfg.MODEL.GCNET.CONTEXT = "gc"
    cfg.MODEL.GCNET.DILATIONS = []
    for old in RENAMED_YACS_KEYS:
        cfg.MODEL.GCNET[old] = None
    cfg.MODEL.GCNET_SEG = CN(
        {
            **yacs_defaults(head.YACS_KEYS, option_defaults(head.ContextHead)),
            **yacs_defaults(head.AUXILIARY_YACS_KEYS, head.AUXILIARY_HEAD),
            **yacs_defaults(segmentor.YACS_KEYS, option_defaults(segmentor.ContextSegmentor)),
        }
    )
