"""SASRec and SAE training on several processes or machines under torchrun, with DistributedDataParallel and
the global batch of one process: N processes train the weights one process would, up to float summation
order (how: ddp.py). This module starts and joins the processes and runs the stages:

    torchrun --nproc_per_node 2 -m recsae_utils.distributed ml-1m [--profile tiny] [--stages sasrec,sae]

Evaluation runs on every rank (same weights, same numbers), so model selection and early stopping agree
everywhere. Only rank 0 writes artifacts (artifacts.atomic_path) and prints; the run folder must be one that
every rank reads (a shared filesystem across machines), which `agree` checks before each stage.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist

from .ddp import is_main, rank_world


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
    """Train the run's SASRec seeds (train.run_seeds) and fit its SAEs (stages.fit_stage) over all ranks.
    The checkpoints and done.json files are those `make all` writes, so its stages 02-03 then reuse them."""
    from . import config, data, pipeline, stages, train

    ap = argparse.ArgumentParser(prog="torchrun ... -m recsae_utils.distributed", description=main.__doc__)
    ap.add_argument("dataset")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--stages", default="sasrec,sae", help="comma-separated: sasrec, sae")
    args = ap.parse_args(argv)
    chosen = set(args.stages.split(","))
    if not chosen or chosen - {"sasrec", "sae"}:
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
            sasrec_cfg = cfg if "sasrec" in chosen else replace(cfg, seeds=cfg.seeds[:1])  # the SAE's SASRec
            agree(_disk_state(Path(cfg.run_dir) / cfg.model), f"the {cfg.model} checkpoints")
            for seed, r in train.run_seeds(sasrec_cfg, ds, inst, progress=rank == 0).items():
                say(f"SASRec seed {seed}: best epoch {r['best_epoch']}, test {r['test']}", flush=True)
            barrier()
            if "sae" in chosen:
                with main_first():  # rank 0 computes and caches h_u, the others load it
                    ctx = stages.stage_inputs(cfg)
                agree(_disk_state(Path(cfg.run_dir) / "sae"), "the SAE checkpoints")
                for name, (m, k, variant) in stages.fit_plan(cfg).items():
                    res = stages.fit_stage(cfg, ctx, m, k, variant, progress=rank == 0)
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
