"""Benchmark: TopK SAE fit speed and quality on ~562k x 64 user vectors (2,048 latents, k = 32).

    .venv/bin/python benchmarks/bench_sae.py [h_u.npy] [--runs 1024:3e-3,4096:3e-3] [--epochs 2] [--threads N]

Without a path it uses random data of the ML-1M train size (562,729 x 64: the train instances' h_u).
Random Gaussian data are much harder to reconstruct than real h_u, so judge speed on them and quality
only on a real h_u dump. Prints batch size, lr, seconds/epoch, train FVU (epoch mean, weights moving)
and FVU / explained variance after the last epoch on a 50k sample.

Measured (this repo's 2-core Xeon VM, torch 2.13 CPU, WHILE a SASRec training job kept both cores
busy, so an idle machine should be faster): real h_u from a 13-epoch SASRec (562,729 x 64), "openai"
variant, 1 thread; explained variance after each epoch on a 30k sample of the training vectors:

    batch   lr     s/epoch   EV after epoch 1 / 2 / 3 / 5 / 10
      512   1e-4    17-18     .889 / .936 / .954             (the reference's lr: tens of epochs)
      512   1e-3    11-12     .978 / .991 / .995
     1024   1e-3    11-12     .963 / .981 / .990 / .995
     1024   3e-3    10-14     .985 / .994 / .996 / .997 / .998   <- recommended (1.3% dead at epoch 10)
     2048   3e-3    12-13     .970 / .987 / .993
     4096   1e-3     9-10     .916 / .946 / .959 / .973
     4096   3e-3     9-10     .953 / .971 / .982 / .992
     4096   1e-2     9-10     .977 / .990 / .993 / .995      (dead latents appear: 0.7% at epoch 5)
    16384   1e-2    14-15     .921 / .961 / .973

This script's default run (random data, 2 epochs, --threads 1) took 47 s: 10.0 s/epoch at 1024 and
9.4 s/epoch at 4096 (FVU .159 / .154: Gaussian noise has no sparse structure). On the real h_u, 2
epochs: 512/1e-3 FVU .0086, 1024/3e-3 .0062, 4096/3e-3 .0287, 4096/1e-2 .0101.

Per 4096-batch step (1 thread): encoder matmul ~22 ms, exact top-k ~25 ms (two-stage, vs ~50 ms for
torch.topk), everything else (sparse backward, embedding_bag, Adam) ~30 ms. Batch size barely changes
the cost of an epoch (the matmul and the top-k scale with the number of vectors, not of steps) until
~16k, where the (B, 2048) temporaries fall out of cache; smaller batches take more optimiser steps per
epoch and converge in fewer epochs. With both cores taken by another job, torch's default 2 threads
were >10x SLOWER than 1 (127 s/epoch at 1024): every parallel region waits for a descheduled thread.
On a shared box pass --threads 1 (or call torch.set_num_threads(1) before fit_sae).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from recsae_utils.config import RunConfig
from recsae_utils.metrics import reconstruction_metrics
from recsae_utils.stages import sae_config
from recsae_utils.sae import fit_sae, reconstruct


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", help="a cached h_u matrix (.npy, n x 64); default: random data")
    ap.add_argument("--runs", default="1024:3e-3,4096:3e-3", help="comma-separated batch_size:lr pairs")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--variant", default="openai", choices=["openai", "reference"])
    ap.add_argument("--n-latents", type=int, default=2048)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--hu-from", metavar="RUN_DIR", help="also time computing h_u of every ML-1M training "
                    "instance with RUN_DIR/sasrec/seed0/sasrec.safetensors (needs RECSAE_DATA_DIR)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.hu_from:
        from recsae_utils import config, data, train
        cfg = config.load("ml-1m")
        inst = data.build_instances(data.prepare(cfg), cfg.history_max)["train"]
        model = train.load_sasrec(f"{args.hu_from}/sasrec/seed0/sasrec.safetensors")
        t0 = time.time()
        h = train.user_vectors(model, inst, batch_size=4096)
        print(f"h_u of {len(inst):,} training instances: {time.time() - t0:.1f} s {tuple(h.shape)}", flush=True)
    if args.path:
        x = torch.from_numpy(np.load(args.path)).float()
    else:
        x = torch.randn(562_729, 64, generator=torch.Generator().manual_seed(0))
    sample = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:50_000]]
    print(f"data {tuple(x.shape)} ({args.path or 'random'}), {args.n_latents} latents, k={args.k}, "
          f"{args.variant}, {torch.get_num_threads()} thread(s), {args.epochs} epoch(s)", flush=True)
    print(f"{'batch':>6} {'lr':>7} {'s/epoch':>8} {'train_fvu':>9} {'fvu':>7} {'EV':>7} {'dead':>6}", flush=True)
    for run in args.runs.split(","):
        bs, lr = run.split(":")
        # the run's SAE (stages.sae_config on the default RunConfig) with this script's size, batch, lr, epochs
        cfg = replace(sae_config(RunConfig(), x.shape[1], len(x), args.n_latents, args.k, args.variant),
                      batch_size=int(bs), lr=float(lr), epochs=args.epochs, early_stop=args.epochs + 1)
        t0 = time.time()
        res = fit_sae(x, cfg, progress=False)
        fit_s = time.time() - t0
        last = res.history[-1]
        m = reconstruction_metrics(sample, reconstruct(res.sae, sample))
        sec = float(np.mean([h["seconds"] for h in res.history]))
        print(f"{bs:>6} {float(lr):>7.0e} {sec:>8.1f} {last['train_fvu']:>9.4f} {m['fvu']:>7.4f} "
              f"{m['explained_variance']:>7.4f} {last['dead']:>6.3f}   (fit {fit_s:.0f}s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
