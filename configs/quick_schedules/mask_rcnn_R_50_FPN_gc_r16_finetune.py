"""Fine-tune GCNet on your own instances: the COCO-trained GC-ResNet-50-FPN Mask R-CNN (GC r16
in c3-c5, mmdetection's 39.7 box AP / 35.9 mask AP) on a COCO-format dataset, with the quick
start's small-data recipe (2 images per batch, shorter side 320-384) at lr 0.0025.

Name your files with overrides (README "Train on your own dataset"); the number of classes is
read from the training file:

    python tools/train_net.py --config-file configs/quick_schedules/mask_rcnn_R_50_FPN_gc_r16_finetune.py \\
        dataset.train.json_file=my_data/train.json dataset.train.image_root=my_data/train \\
        dataset.val.json_file=my_data/val.json dataset.val.image_root=my_data/val

Start with about 20 epochs (train.max_iter = 10 x #train images, at least 300): the learning
rate is divided by 10 at 70% and 90% of train.max_iter, whatever its value.
"""

from detectron2.config import LazyCall as L

from gcnet.data import custom_dataset_num_classes, register_custom_dataset

from ..common.coco_schedule import multistep_schedule
from .mask_rcnn_R_50_FPN_gc_r16_balloon import dataloader, model, optimizer, train

dataset = dict(
    name="my_dataset",  # registered as <name>_train and <name>_val
    train=dict(json_file="datasets/my_dataset/annotations/train.json", image_root="datasets/my_dataset/train"),
    val=dict(json_file="datasets/my_dataset/annotations/val.json", image_root="datasets/my_dataset/val"),
)

dataloader.train.dataset.names = L(register_custom_dataset)(
    name="${dataset.name}_train", json_file="${dataset.train.json_file}", image_root="${dataset.train.image_root}"
)
dataloader.test.dataset.names = L(register_custom_dataset)(
    name="${dataset.name}_val", json_file="${dataset.val.json_file}", image_root="${dataset.val.image_root}"
)
model.roi_heads.num_classes = L(custom_dataset_num_classes)(json_file="${dataset.train.json_file}")

train.init_checkpoint = "gcnet://mmdet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco"
train.output_dir = "output/finetune_gc_r16"
train.max_iter = 300
train.checkpointer.period = 1000

optimizer.lr = 0.0025  # the paper's 0.02 for 16 images, scaled to 2
lr_multiplier = multistep_schedule(300, (210, 270), warmup_iters=50)
