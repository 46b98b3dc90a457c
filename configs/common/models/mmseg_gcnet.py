"""mmsegmentation's GCNet (``configs/_base_/models/gcnet_r50-d8.py``): ResNet-50-V1c with
output stride 8 (deep stem 32-32-64, contract dilation, SyncBN), the GC head (r4) on c5, an
FCN auxiliary head with 256 channels on c4 (loss weight 0.4), align_corners=False, and
whole-image inference with mmsegmentation's test-time rule: the logits are resized to the
output size before the softmax and argmax."""

from .context_segmentor import model

model.backbone.depth = 50
model.backbone.stem_channels = [32, 32, 64]
model.backbone.contract_dilation = True
model.sem_seg_head.context = "gc"
model.auxiliary_head.channels = 256
model.inference = dict(mode="whole", scales=[1.0], flip=False, output_resize="logits")
