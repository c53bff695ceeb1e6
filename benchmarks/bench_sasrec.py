"""Benchmark: SASRec training/evaluation speed on ML_1MTOPK, ours vs a ReChorus-style loop, same run.

The baseline reproduces what ReChorus does per batch: build each sample's feed dict in Python (history
list slicing, padding) and run the transformer on every position of the padded batch, then take the
last valid position. Ours slices pre-built arrays and computes only the last slot's output (same maths;
tests/test_sasrec.py checks the equality). Both use the same model, optimiser and batch size 256.

    RECSAE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_sasrec.py [--batches 300] [--full]

--full also trains the reference config to early stop and reports the wall time.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from recsae_utils import config, data, train
from recsae_utils.model import SASRec, SASRecConfig


def rechorus_style_batch(inst: data.Instances, idx: np.ndarray, seqs: dict, neg: np.ndarray, L: int):
    """Per-sample Python feed dicts + collate, as ReChorus's SeqReader/BaseModel.Dataset do."""
    feeds = []
    for i in idx:
        u, pos = int(inst.user[i]), int(inst.position[i])
        his = seqs[u][max(0, pos - L):pos]
        feeds.append({"item_id": [int(inst.item[i]), int(neg[i])], "history": his[::-1], "length": len(his)})
    maxlen = max(f["length"] for f in feeds)
    hist = torch.tensor([f["history"] + [0] * (maxlen - f["length"]) for f in feeds])
    items = torch.tensor([f["item_id"] for f in feeds])
    return hist, items


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=300, help="batches timed per loop")
    ap.add_argument("--full", action="store_true", help="also train to early stop (several minutes)")
    args = ap.parse_args()
    cfg = config.load("ml-1m")
    ds = data.prepare(cfg)
    inst = data.build_instances(ds)
    tr = inst["train"]
    n_batches = int(np.ceil(len(tr) / 256))
    mask = data.user_item_csr(ds)
    # the users' full timelines, for the per-sample baseline
    all_items = {u: [] for u in range(ds.n_users)}
    for s in ("train", "dev", "test"):
        ins = inst[s]
        for u, p, it in zip(ins.user, ins.position, ins.item):
            all_items[int(u)].append((int(p), int(it)))
    first = ds.train.sort_values("time", kind="stable").groupby("user_id").item_id.first()
    seqs = {u: [first.get(u, 0)] + [it for _, it in sorted(v)] for u, v in all_items.items()}

    rng = np.random.default_rng(0)
    neg = train.sample_negatives(tr.user, ds.n_items, *data.user_item_csr(ds, ("train",)), rng)
    perm = rng.permutation(len(tr))
    rows = []
    for name in ("rechorus-style", "ours"):
        torch.manual_seed(0)
        model = SASRec(SASRecConfig(n_items=ds.n_items))
        opt = train.make_optimizer(model, train.TrainConfig())
        hist_all, tgt_all, neg_all = map(torch.from_numpy, (tr.hist, tr.item, neg))
        t0 = time.perf_counter()
        for b in range(args.batches):
            idx = perm[b * 256:(b + 1) * 256]
            if name == "ours":  # exactly train_sasrec's batch path
                loss = train.bpr_loss(model, hist_all[idx], tgt_all[idx], neg_all[idx])
            else:
                hist, items = rechorus_style_batch(tr, idx, seqs, neg, 20)
                h = model.states(hist)[:, 0]
                s = (h[:, None, :] * model.item_emb(items)).sum(-1)
                loss = -F.logsigmoid(s[:, 0] - s[:, 1]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        per_batch = (time.perf_counter() - t0) / args.batches
        t0 = time.perf_counter()
        if name == "ours":
            train.evaluate(model, inst["dev"], mask)
        else:  # all positions for the dev batch too
            with torch.no_grad():
                h = torch.cat([model.states(torch.from_numpy(inst["dev"].hist[s:s + 256]))[:, 0]
                               for s in range(0, len(inst["dev"]), 256)])
            train.evaluate(model, inst["dev"], mask, h=h)
        rows.append((name, per_batch * 1000, per_batch * n_batches, time.perf_counter() - t0))
    print(f"\nML_1MTOPK, {len(tr):,} training instances = {n_batches:,} batches of 256, torch threads "
          f"{torch.get_num_threads()}\n")
    print("| loop | ms/batch | s/epoch (extrapolated) | s/dev eval |\n|---|---:|---:|---:|")
    for name, ms, ep, ev in rows:
        print(f"| {name} | {ms:.2f} | {ep:.1f} | {ev:.2f} |")
    print(f"| ratio rechorus-style / ours | {rows[0][1] / rows[1][1]:.1f}x | | {rows[0][3] / rows[1][3]:.1f}x |")
    print("\nReChorus's own loop measured on this machine: ~95 s/epoch, ~6 s/dev eval (issue #2).")
    if args.full:
        t0 = time.time()
        r = train.train_sasrec(ds, inst, train.TrainConfig(), progress=False)
        test = train.evaluate(r.model, inst["test"], mask)
        print(f"\nfull training to early stop: {time.time() - t0:.0f} s, {len(r.history)} epochs "
              f"(best {r.best_epoch}), test NDCG@10 {test['NDCG@10']:.4f}")


if __name__ == "__main__":
    main()
