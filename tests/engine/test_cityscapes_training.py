"""A GC-head segmentation model trains on real images in the Cityscapes layout (CamVid) with
tools/train_net.py on CPU, and is evaluated with both semantic segmentation evaluators."""

import json

from ..helpers import run_tool, write_camvid_as_cityscapes

CONFIG = "configs/Cityscapes-SemanticSegmentation/mmseg_gcnet_R_50_D8_512x1024_40k.py"


def test_gc_head_trains_and_evaluates_on_camvid(shared_data, tmp_path):
    root = tmp_path / "datasets"
    write_camvid_as_cityscapes(shared_data / "camvid", root, {"train": 6, "val": 3})
    env = {"DETECTRON2_DATASETS": str(root)}
    prepared = run_tool("tools/prepare_datasets.py", "cityscapes", env=env)
    assert prepared.returncode == 0, prepared.stderr
    out = tmp_path / "out"
    result = run_tool(
        "tools/train_net.py",
        "--config-file",
        CONFIG,
        "train.init_checkpoint=",
        "train.max_iter=4",
        "train.log_period=1",
        f"train.output_dir={out}",
        "train.device=cpu",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.train.mapper.augmentations.1.crop_size=[128,128]",
        "dataloader.test.num_workers=0",
        "dataloader.test.mapper.augmentations=[]",  # CamVid's 480x360 as they are, not fitted in 2048x1024
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    losses = [m for m in metrics if "loss_sem_seg" in m]
    assert len(losses) == 4 and all("loss_sem_seg_aux" in m for m in losses)
    final = metrics[-1]
    assert 0 <= final["sem_seg/mIoU"] <= 100 and "sem_seg/fwIoU" in final and "sem_seg/pACC" in final
    # Both evaluators average the IoU of the classes present, over the same pixels.
    assert abs(final["cityscapes/IoU"] - final["sem_seg/mIoU"]) < 1e-6
    assert "cityscapes/IoU_sup" in final and "cityscapes/IoU-road" in final
    assert (out / "model_final.pth").is_file()
