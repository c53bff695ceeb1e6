"""Benchmark: SASRec training speed on ML_1MTOPK, one option at a time, as ratios measured in one run.

Each option trains its own copy of the same initial model on the same epoch (same permutation and
negatives), in rounds that alternate the order of the options, so machine noise hits them all; the
table gives each option's median ms/batch and its speed-up over `before` (the loop as it was before
the speed work: per-batch gathers through the permutation, eager loss, torch's default threads).

`in-house ReChorus-style` is OUR imitation of ReChorus's batch path (per-sample Python feed dicts and
collate, the transformer on every position), not ReChorus itself; benchmarks/bench_vs_rechorus.py runs
ReChorus's own main.py side by side.

    RECSAE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_sasrec.py [--batches 300] [--rounds 4] [--full]

--full also trains the default config to early stop and reports the wall time.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from recsae_utils import config, data, train
from recsae_utils.model import SASRec, SASRecConfig

B = 256


def rechorus_style_batch(inst: data.Instances, idx: np.ndarray, seqs: dict, neg: np.ndarray, L: int):
    """Per-sample Python feed dicts + collate, imitating ReChorus's SeqReader/BaseModel.Dataset."""
    feeds = []
    for i in idx:
        u, pos = int(inst.user[i]), int(inst.position[i])
        his = seqs[u][max(0, pos - L):pos]
        feeds.append({"item_id": [int(inst.item[i]), int(neg[i])], "history": his[::-1], "length": len(his)})
    maxlen = max(f["length"] for f in feeds)
    hist = torch.tensor([f["history"] + [0] * (maxlen - f["length"]) for f in feeds])
    items = torch.tensor([f["item_id"] for f in feeds])
    return hist, items


def timelines(ds: data.Dataset, inst: dict[str, data.Instances]) -> dict[int, list[int]]:
    """Each user's full item timeline, for the per-sample imitation."""
    all_items = {u: [] for u in range(ds.n_users)}
    for s in ("train", "dev", "test"):
        ins = inst[s]
        for u, p, it in zip(ins.user, ins.position, ins.item):
            all_items[int(u)].append((int(p), int(it)))
    first = ds.train.sort_values("time", kind="stable").groupby("user_id").item_id.first()
    return {u: [first.get(u, 0)] + [it for _, it in sorted(v)] for u, v in all_items.items()}


# option -> (threads, gather the epoch once, optimiser, loss path); threads 0 = torch's default
OPTIONS = {
    "in-house ReChorus-style": (0, False, "fused", "per-sample"),
    "before": (0, False, "fused", "eager"),
    "1 thread": (1, False, "fused", "eager"),
    "1 thread + epoch gather": (1, True, "fused", "eager"),
    "1 thread + epoch gather + foreach Adam": (1, True, "foreach", "eager"),
    "1 thread + epoch gather + torch.compile (default)": (1, True, "fused", "compile"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=300, help="batches timed per option and round")
    ap.add_argument("--rounds", type=int, default=4, help="rounds, alternating the order of the options")
    ap.add_argument("--full", action="store_true", help="also train the default config to early stop (minutes)")
    args = ap.parse_args()
    cfg = config.load("ml-1m")
    ds = data.prepare(cfg)
    inst = data.build_instances(ds)
    tr = inst["train"]
    n_batches = int(np.ceil(len(tr) / B))
    seqs = timelines(ds, inst)
    rng = np.random.default_rng([0, 1])
    neg = train.sample_negatives(tr.user, ds.n_items, *data.user_item_csr(ds, ("train",)), rng)
    perm = rng.permutation(len(tr))
    hist_all, tgt_all, neg_all = map(torch.from_numpy, (tr.hist, tr.item, neg))
    default_threads = torch.get_num_threads()
    t0 = time.perf_counter()
    epoch = [torch.from_numpy(a[perm]) for a in (tr.hist, tr.item, neg)]
    gather_s = time.perf_counter() - t0

    steps, setup = {}, {}
    for name, (threads, gathered, adam, path) in OPTIONS.items():
        torch.set_num_threads(threads or default_threads)
        torch.manual_seed(0)
        model = SASRec(SASRecConfig(n_items=ds.n_items))
        opt = train.make_optimizer(model, train.TrainConfig())
        if adam == "foreach":
            for g in opt.param_groups:
                g["fused"], g["foreach"] = False, True
        t0 = time.perf_counter()
        loss_fn = train.compiled_loss(model, tuple(a[:B] for a in epoch)) if path == "compile" else train.bpr_loss
        setup[name] = time.perf_counter() - t0

        def step(b, model=model, opt=opt, gathered=gathered, path=path, loss_fn=loss_fn):
            if path == "per-sample":
                hist, items = rechorus_style_batch(tr, perm[b * B:(b + 1) * B], seqs, neg, 20)
                h = model.states(hist)[:, 0]
                s = (h[:, None, :] * model.item_emb(items)).sum(-1)
                loss = -F.logsigmoid(s[:, 0] - s[:, 1]).mean()
            elif gathered:
                loss = loss_fn(model, *(a[b * B:(b + 1) * B] for a in epoch))
            else:
                idx = torch.from_numpy(perm[b * B:(b + 1) * B])
                loss = loss_fn(model, hist_all[idx], tgt_all[idx], neg_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        steps[name] = (threads, step)

    times = {name: [] for name in OPTIONS}
    for r in range(args.rounds):
        first = (r * args.batches) % max(1, n_batches - 1 - args.batches)
        for name in (list(OPTIONS) if r % 2 == 0 else list(OPTIONS)[::-1]):
            threads, step = steps[name]
            torch.set_num_threads(threads or default_threads)
            t0 = time.perf_counter()
            for b in range(first, first + args.batches):
                step(b)
            times[name].append((time.perf_counter() - t0) / args.batches)
    torch.set_num_threads(default_threads)

    print(f"\nML_1MTOPK, {len(tr):,} training instances = {n_batches:,} batches of {B}; torch default threads "
          f"{default_threads}; {args.rounds} alternating rounds of {args.batches} batches; whole-epoch gather "
          f"{gather_s * 1000:.0f} ms\n")
    print("| option | ms/batch (median) | s/epoch (extrapolated) | speed-up over `before` (median of rounds) "
          "| one-time setup s |\n|---|---:|---:|---:|---:|")
    for name in OPTIONS:
        ms = statistics.median(times[name]) * 1000
        ratio = statistics.median(a / b for a, b in zip(times["before"], times[name]))
        print(f"| {name} | {ms:.2f} | {ms * n_batches / 1000:.1f} | {ratio:.2f}x | {setup.get(name, 0):.1f} |")
    print("\nSetup for torch.compile is its compile time (less when its on-disk cache is warm). Absolute times "
          "depend on the machine's load; compare the ratios.")
    if args.full:
        mask = data.user_item_csr(ds)
        t0 = time.time()
        r = train.train_sasrec(ds, inst, train.TrainConfig(), progress=False)
        test = train.evaluate(r.model, inst["test"], mask)
        print(f"\nfull training to early stop: {time.time() - t0:.0f} s, {len(r.history)} epochs "
              f"(best {r.best_epoch}), test NDCG@10 {test['NDCG@10']:.4f}")


if __name__ == "__main__":
    main()
