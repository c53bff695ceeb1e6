"""SASRec and SAE training on several processes or machines: torchrun + DistributedDataParallel, with the
global batch of a single process, so that N processes train the weights one process would (up to float
summation order).

How a step stays the single-process step: every rank holds the whole training set, draws the same
permutation (and SASRec negatives) from the same seed and takes its contiguous part of each global batch
(`shard`). Its loss is its part of the single-process loss: for SASRec the batch-mean BPR over its rows
times its share of the rows; for the SAE the FVU numerators over its rows divided by the denominator of
the whole batch (`sq_dev`, all-reduced). DDP then sums the gradients (`wrap` replaces its averaging hook),
so the gradient is the single-process one. What else depends on the whole batch is all-reduced: the
latents that fired (dead-latent tracking, `union`) and the epoch's loss sums (`all_sum`). Evaluation runs
on every rank (same weights, same numbers), so model selection and early stopping agree everywhere.
Only rank 0 writes artifacts (artifacts.atomic_path asks `is_main`); the run folder must be one that
every rank reads (a shared filesystem across machines), which `agree` checks before each stage.

    torchrun --nproc_per_node 2 -m recsae_utils.distributed ml-1m [--profile tiny] [--stages sasrec,sae]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

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


def init() -> tuple[int, int]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the environment);
    a plain `python` start stays one process. CPU tensors go over gloo, CUDA tensors over NCCL, each rank on
    the GPU numbered LOCAL_RANK (so device "auto" = "cuda" is that rank's own GPU)."""
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group("cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group("gloo")
    return rank_world()


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if rank_world()[1] > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (and writes its cache), then the others run it (and read that cache)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


# ---------------------------------------------------------------------------------------------------
# The step


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
    ddp = nn.parallel.DistributedDataParallel(_Loss(model, loss_fn), device_ids=[p.device] if p.is_cuda else None,
                                              forward_sync_buffers=False, static_graph=True)
    ddp.register_comm_hook(None, _sum_hook)
    return ddp


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


def agree(value: Any, what: str) -> None:
    """Raise on every rank unless every rank holds the same value (what each rank read from the run folder:
    differing views would make the ranks train different epochs and wait on each other for ever)."""
    rank, world = rank_world()
    if world == 1:
        return
    seen: list[Any] = [None] * world
    dist.all_gather_object(seen, value)
    if any(v != seen[0] for v in seen):
        differ = [r for r, v in enumerate(seen) if v != seen[0]]
        raise RuntimeError(f"{what} differs between rank 0 and ranks {differ}: every rank must read the same "
                           f"run folder (a shared filesystem across machines)")


def _disk_state(folder: Path) -> list[tuple[str, int]]:
    """(path, size) of every file under `folder`: what a stage will resume from or reuse."""
    if not folder.is_dir():
        return []
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


# ---------------------------------------------------------------------------------------------------
# The entry point: the SASRec and SAE stages of a run folder, under torchrun


def main(argv: list[str] | None = None) -> int:
    """Train the run's SASRec seeds (train.run_seeds) and fit its SAEs (recsae.fit_stage) over all ranks.
    The checkpoints and done.json files are those `make all` writes, so its stages 02-03 then reuse them."""
    from . import config, data, pipeline, recsae, train

    ap = argparse.ArgumentParser(prog="torchrun ... -m recsae_utils.distributed", description=main.__doc__)
    ap.add_argument("dataset")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--stages", default="sasrec,sae", help="comma-separated: sasrec, sae")
    args = ap.parse_args(argv)
    stages = set(args.stages.split(","))
    if not stages or stages - {"sasrec", "sae"}:
        ap.error(f"--stages {args.stages!r}: choose from sasrec, sae")
    rank, world = init()
    say = print if rank == 0 else (lambda *a, **k: None)
    if rank:
        config.set_progress_file(None)  # the pipeline's progress lines come from rank 0 only
    try:
        cfg = config.load(args.dataset, args.profile)
        with pipeline.run_lock(cfg.run_dir) if rank == 0 else contextlib.nullcontext():
            t0 = time.time()
            say(f"{cfg.dataset}: {world} process(es), backend {dist.get_backend() if world > 1 else 'none'}, "
                f"run folder {cfg.run_dir}", flush=True)
            with main_first():
                ds = data.prepare(cfg)
            inst = data.build_instances(ds, cfg.history_max)
            seeds = cfg if "sasrec" in stages else replace(cfg, seeds=cfg.seeds[:1])  # the SAE reads seed 0's
            agree(_disk_state(Path(cfg.run_dir) / "sasrec"), "the SASRec checkpoints")
            for seed, r in train.run_seeds(seeds, ds, inst, progress=rank == 0).items():
                say(f"SASRec seed {seed}: best epoch {r['best_epoch']}, test {r['test']}", flush=True)
            barrier()
            if "sae" in stages:
                with main_first():  # rank 0 computes and caches h_u, the others load it
                    ctx = recsae.stage_inputs(cfg)
                agree(_disk_state(Path(cfg.run_dir) / "sae"), "the SAE checkpoints")
                for name, (m, k, variant) in recsae.fit_plan(cfg).items():
                    res = recsae.fit_stage(cfg, ctx, m, k, variant, progress=rank == 0)
                    last = res.history[res.best_epoch - 1] if res.best_epoch else {}
                    say(f"SAE {name} ({m} latents, k={k}, {variant}): best epoch {res.best_epoch}, "
                        f"train FVU {last.get('train_fvu', float('nan')):.4f}", flush=True)
                barrier()
            say(f"done in {time.time() - t0:.1f} s", flush=True)
    finally:
        close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
