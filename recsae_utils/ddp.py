"""The data-parallel step: N torchrun processes take the step one process takes on the same global batch,
up to float summation order (recsae_utils.distributed starts them; train.py and sae/fit.py call this).

Every rank holds the whole training set, draws the same permutation (and SASRec negatives) from the same
seed and takes its contiguous part of each global batch (`shard`). Its loss is its part of the
single-process loss: for SASRec the batch-mean BPR over its rows times its share of the rows; for the SAE
the FVU numerators over its rows divided by the denominator of the whole batch (`sq_dev`, all-reduced).
DDP then sums (not averages) the gradients (`wrap`), so the gradient is the single-process one. What else
depends on the whole batch is all-reduced: the latents that fired (dead-latent tracking, `union`) and the
epoch's loss sums (`all_sum`). On one process shard, wrap, all_sum and union change nothing (sae/fit.py keeps
its own one-process denominator), so one process trains bit for bit as before.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def shard(rows: Tensor, pad: bool = True) -> tuple[Tensor, float]:
    """This rank's contiguous part of a global batch and its share of the rows (1.0 on one process).

    A batch with fewer rows than ranks (a last SASRec batch) leaves some ranks without rows: they get the
    batch's first row with share 0, so their step still runs (DDP needs every rank) and adds nothing.
    pad=False raises instead (the SAE, whose numerators and denominators would count the padding row)."""
    rank, world = rank_world()
    if world == 1:
        return rows, 1.0
    mine = torch.tensor_split(rows, world)[rank]
    if len(mine):
        return mine, len(mine) / len(rows)
    if not pad:
        raise ValueError(f"a batch of {len(rows)} rows cannot be split over {world} processes; "
                         f"use a larger batch or fewer processes")
    return rows[:1], 0.0


class _Loss(nn.Module):
    """DDP syncs gradients only for what its forward computed, so the loss itself is the forward."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, *args):
        return self.loss_fn(self.model, *args)


def _sum_hook(group, bucket):  # no annotations: DDP checks them and the future import makes them strings
    """DDP's all-reduce without its division by the world size: each rank's loss is already its part."""
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda f: f.value()[0])


def wrap(model: nn.Module, loss_fn: Callable) -> Callable:
    """loss_fn(model, *args) as a callable of *args: itself on one process, a DDP module over the ranks
    otherwise, whose backward leaves the SUM of the ranks' gradients on every rank. static_graph lets a
    parameter that no step uses (the one-layer SASRec path never reads the key bias) keep grad None,
    as on one process."""
    if rank_world()[1] == 1:
        return partial(loss_fn, model)
    p = next(model.parameters())
    step = nn.parallel.DistributedDataParallel(_Loss(model, loss_fn), device_ids=[p.device] if p.is_cuda else None,
                                               forward_sync_buffers=False, static_graph=True)
    step.register_comm_hook(None, _sum_hook)
    return step


def all_sum(t: Tensor) -> Tensor:
    """t summed over the ranks (a copy; t itself on one process)."""
    if rank_world()[1] == 1:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


def sq_dev(x: Tensor) -> Tensor:
    """sum_b ||x_b - mean(x)||^2 over the global batch whose rows are split over the ranks: FVU's
    denominator (sae.sq_dev on one process). Two passes, as on one process: the mean, then the squares."""
    x = x.detach()
    s = all_sum(torch.cat([x.sum(0), x.new_tensor([len(x)])]))
    return all_sum(((x - s[:-1] / s[-1]) ** 2).sum())


def union(ids: Tensor, n: int) -> Tensor:
    """The ids (in 0..n-1) that any rank holds: the latents that fired anywhere in the global batch."""
    if rank_world()[1] == 1:
        return ids
    mask = torch.zeros(n, dtype=torch.int32, device=ids.device)
    mask[ids] = 1
    return all_sum(mask).nonzero().squeeze(1)
