"""Mask R-CNN with FPN on an ImageNet-pretrained GC network of timm.

The model of ``mask_rcnn_gcnet_fpn.py`` (detectron2's Mask R-CNN FPN, RGB input normalised by
the ImageNet mean/std, which timm's GC networks were trained with) with
``gcnet.modeling.TimmBackbone`` as the bottom-up network: timm's ``gcresnet50t`` (tiered stem,
GC blocks with ratio 1/8 and LayerNorm2d in every block), fixed BN, stem and res2 frozen. The
backbone loads timm's ImageNet weights itself (timm's hub and cache, or ``pretrained_file``),
so the configs leave ``train.init_checkpoint`` empty.
"""

from detectron2.config import LazyCall as L

from gcnet.modeling import TimmBackbone

from .mask_rcnn_gcnet_fpn import model

model.backbone.bottom_up = L(TimmBackbone)(
    model_name="gcresnet50t",
    pretrained=True,
    pretrained_file="",  # a local state dict of the timm model instead of timm's hub
    norm="FrozenBN",
    freeze_at=2,
    out_features=["res2", "res3", "res4", "res5"],
)
