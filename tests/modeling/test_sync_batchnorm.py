"""SyncBatchNorm in a 2-process CPU (gloo) run equals BatchNorm over the concatenated batch."""

import os

import pytest
import torch
from torch import nn

from detectron2.utils import comm

from gcnet.engine import launch
from gcnet.modeling import SyncBatchNorm

# Images per rank; the second case has unequal shares, as with a last partial batch.
BATCHES = {"equal": (2, 2), "unequal": (3, 1)}


def make_inputs(sizes):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, 4, 5, 6, generator=g) * 3 + 1 for n in sizes]


def make_weights():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, generator=g), torch.randn(4, generator=g)


def _worker(out_dir, sizes):
    rank = comm.get_rank()
    x = make_inputs(sizes)[rank].requires_grad_()
    bn = SyncBatchNorm(4, momentum=0.5)
    with torch.no_grad():
        bn.weight.copy_(make_weights()[0])
        bn.bias.copy_(make_weights()[1])
    y = bn(x)
    (y * torch.arange(y.numel()).reshape(y.shape)).sum().backward()
    torch.save(
        dict(
            y=y.detach(), x_grad=x.grad, w_grad=bn.weight.grad, running_mean=bn.running_mean, running_var=bn.running_var
        ),
        os.path.join(out_dir, f"rank{rank}.pt"),
    )


@pytest.mark.parametrize("case", sorted(BATCHES))
def test_two_process_cpu_sync_bn_equals_global_bn(case, tmp_path, free_port):
    sizes = BATCHES[case]
    launch(_worker, 2, dist_url=f"tcp://127.0.0.1:{free_port}", args=(str(tmp_path), sizes))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    inputs = [x.requires_grad_() for x in make_inputs(sizes)]
    bn = nn.BatchNorm2d(4, momentum=0.5)
    with torch.no_grad():
        bn.weight.copy_(make_weights()[0])
        bn.bias.copy_(make_weights()[1])
    y = bn(torch.cat(inputs))
    weights = torch.cat([torch.arange(x.numel()).reshape(x.shape) for x in inputs])
    (y * weights).sum().backward()

    for rank in ranks:
        torch.testing.assert_close(rank["running_mean"], bn.running_mean)
        torch.testing.assert_close(rank["running_var"], bn.running_var)
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), rtol=1e-5, atol=1e-5)
    for rank, x in zip(ranks, inputs):
        torch.testing.assert_close(rank["x_grad"], x.grad, rtol=1e-4, atol=1e-4)
    # Each rank holds the gradient of its own loss; DDP sums (averages) them.
    torch.testing.assert_close(ranks[0]["w_grad"] + ranks[1]["w_grad"], bn.weight.grad, rtol=1e-4, atol=1e-3)


def test_single_process_and_eval_are_plain_batchnorm():
    x = torch.randn(3, 4, 5, 5)
    sync, plain = SyncBatchNorm(4), nn.BatchNorm2d(4)
    torch.testing.assert_close(sync(x), plain(x))
    torch.testing.assert_close(sync.running_var, plain.running_var)
    sync.eval(), plain.eval()
    torch.testing.assert_close(sync(x), plain(x))
