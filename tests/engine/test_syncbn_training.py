"""A few SGD steps of a GC-ResNet with SyncBN on 2 CPU processes (gloo, through detectron2's
launch) give the BN statistics of single-process BN over the concatenated batch."""

import os

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.utils import comm

from gcnet.engine import launch
from gcnet.modeling import build_gcnet_resnet

STEPS, IMAGES_PER_RANK = 3, 2


def build(norm):
    torch.manual_seed(0)
    return build_gcnet_resnet(
        18, norm=norm, gc_stages=["res3", "res4", "res5"], num_classes=10, out_features=["linear"]
    )


def batch(step, rank):
    g = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(IMAGES_PER_RANK, 3, 64, 64, generator=g), torch.randint(0, 10, (IMAGES_PER_RANK,), generator=g)


def loss_fn(model, images, labels):
    return torch.nn.functional.cross_entropy(model(images)["linear"], labels)


def running_stats(model):
    return {k: v for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}


def _worker(out_dir):
    rank = comm.get_rank()
    model = DistributedDataParallel(build("SyncBN"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for step in range(STEPS):
        optimizer.zero_grad()
        loss_fn(model, *batch(step, rank)).backward()
        optimizer.step()
    torch.save(running_stats(model.module), os.path.join(out_dir, f"rank{rank}.pt"))


def test_syncbn_training_matches_global_batchnorm(tmp_path, free_port):
    launch(_worker, 2, dist_url=f"tcp://127.0.0.1:{free_port}", args=(str(tmp_path),))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    model = build("BN")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for step in range(STEPS):
        optimizer.zero_grad()
        images, labels = zip(*(batch(step, rank) for rank in range(2)))
        loss_fn(model, torch.cat(images), torch.cat(labels)).backward()
        optimizer.step()
    expected = running_stats(model)

    assert len(expected) == 2 * 20  # stem + 8 blocks x 2 convs + 3 shortcuts
    for key, value in expected.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-4, atol=1e-5)
