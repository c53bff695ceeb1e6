"""Time the concept pipeline on synthetic arrays of the real ML-1M size.

n = 562,729 training instances, L = 20, k = 32 active of m = 2,048 latents, 3,125 items with 18 genres,
~5,400 held-out instances. Requirement: dictionaries (item tables over all firings) + offline cards +
labels + detection scores of all 2,048 latents in under a minute on 2 cores.

    .venv/bin/python benchmarks/bench_concepts.py [--n 562729] [--heldout 5400]

Synthetic data: items drawn by a Zipf-like popularity, 1-3 genres each, release years 1919-2000;
31 of the 32 active latents per instance are random in [64, m) (distinct by construction: an odd
stride not divisible by 31 walks Z_1984 without repeats); slot 0 is a planted "genre of the most recent
item" latent (0..17), so some latents have real structure for the labels and scores to find.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd

from recsae_utils import cards as crd, config, detection as dtc, dictionary as dic, explain as xpl

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
          "Western"]


def make_items(n_items: int, rng) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    ids = np.arange(1, n_items + 1)
    w = 1.0 / (rng.permutation(n_items) + 10.0) ** 1.1
    w /= w.sum()
    ng = rng.integers(1, 4, n_items)
    first = rng.integers(0, len(GENRES), n_items)
    genres = [sorted({GENRES[(g + 5 * j) % len(GENRES)] for j in range(c)}) for g, c in zip(first, ng)]
    year = rng.integers(1919, 2001, n_items)
    items = pd.DataFrame({"item_id": ids, "movie_id": ids, "title": [f"Movie {i} ({y})" for i, y in zip(ids, year)],
                          "year": year, "genres": genres})
    return items, w, first


def make_split(n: int, L: int, k: int, m: int, w: np.ndarray, first_genre: np.ndarray, rng):
    n_items = len(w)
    hist = rng.choice(n_items, size=(n, L), p=w) + 1
    length = np.minimum(L, 1 + rng.geometric(0.08, n))
    hist[np.arange(L)[None, :] >= length[:, None]] = 0
    a = rng.integers(0, m - 64, n)
    b = rng.integers(0, (m - 64) // 2, n) * 2 + 1
    b = np.where(b % 31 == 0, b + 2, b)
    idx = np.empty((n, k), dtype=np.int64)
    idx[:, 1:] = 64 + (a[:, None] + np.arange(k - 1)[None, :] * b[:, None]) % (m - 64)
    idx[:, 0] = first_genre[hist[:, 0] - 1]                     # planted: genre of the most recent item
    val = rng.exponential(1.0, (n, k)).astype(np.float32)
    val[:, 0] += 1.0
    return hist, idx, val


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=562_729)
    ap.add_argument("--heldout", type=int, default=5_400)
    ap.add_argument("--items", type=int, default=3_125)
    ap.add_argument("--m", type=int, default=2_048)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--L", type=int, default=20)
    ap.add_argument("--top-n", type=int, default=config.RunConfig.top_n)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    items, w, first = make_items(args.items, rng)
    hist, idx, val = make_split(args.n, args.L, args.k, args.m, w, first, rng)
    hh, ih, vh = make_split(args.heldout, args.L, args.k, args.m, w, first, rng)
    items["popularity"] = np.bincount(hist.ravel(), minlength=args.items + 1)[1:]
    print(f"synthetic data: n={args.n:,} L={args.L} k={args.k} m={args.m:,} items={args.items:,} "
          f"held-out={args.heldout:,} ({time.perf_counter() - t0:.1f}s to generate; "
          f"{os.cpu_count()} CPUs visible)")

    rows = []

    def timed(name, fn, *a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        rows.append((name, time.perf_counter() - t))
        return out

    d = timed("build_dictionaries (stats, top-N, items, enrichment, popularity)", dic.build_dictionaries,
              idx, val, hist, items, args.m, top_n=args.top_n)
    cards = timed("latent_cards (all live latents)", crd.latent_cards, d)
    labels = timed("offline_label x all cards", lambda: [crd.offline_label(c) for c in cards])
    det = timed("detection_scores (all latents, random + matched)", dtc.detection_scores, d, cards, ih, vh, hh)
    tables = timed("dictionary_tables", dic.dictionary_tables, d, labels={c["latent"]: lab for c, lab in zip(cards, labels)})
    with tempfile.TemporaryDirectory() as tmp:
        timed("save_dictionaries (parquet + csv)", dic.save_dictionaries, tables, tmp)
    W_dec = rng.normal(size=(args.m, 64)).astype(np.float32)
    E = rng.normal(size=(args.items + 1, 64)).astype(np.float32)
    timed("promoted_items (top 10)", dic.promoted_items, W_dec, E, 10)
    timed("explain_recommendations (256 instances, top 10)", xpl.explain_recommendations, ih[:256], vh[:256],
          W_dec, np.zeros(64), E, items, 10)
    timed("item_concepts (all training sequences)", xpl.item_concepts, idx, val, hist, args.items + 1, None, 5, args.m)
    h = rng.normal(size=(args.n, 64)).astype(np.float32)
    hh_dense = rng.normal(size=(args.heldout, 64)).astype(np.float32)

    def baseline():
        bi, bv = dtc.dense_to_sparse(h, 8)
        hi, hv = dtc.dense_to_sparse(hh_dense, 8, mean=h.mean(0), std=h.std(0))
        db = dic.build_dictionaries(bi, bv, hist, items, 64, top_n=args.top_n)
        cb = crd.latent_cards(db)
        [crd.offline_label(c) for c in cb]
        return dtc.detection_scores(db, cb, hi, hv, hh)

    timed("raw-dimension baseline: dense_to_sparse + all of the above (m=64, k=8)", baseline)

    req = sum(t for name, t in rows
              if name.startswith(("build_dictionaries", "latent_cards", "offline_label", "detection_scores")))
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'step':<{width}}{'seconds':>9}")
    print("-" * (width + 9))
    for name, t in rows:
        print(f"{name:<{width}}{t:>9.2f}")
    print("-" * (width + 9))
    print(f"{'dictionaries + cards + offline labels + detection (requirement < 60 s)':<{width}}{req:>9.2f}  "
          f"{'PASS' if req < 60 else 'FAIL'}")
    live = len(cards)
    planted = det[det.latent < 18]
    print(f"\nlive latents {live:,}; with a signature {int(det.has_signature.sum()):,}; "
          f"planted genre latents (0-17): median AUC random {planted.auc_random.median():.3f}, "
          f"matched {planted.auc_matched.median():.3f}; random latents (>= 64): median AUC "
          f"{det[det.latent >= 64].auc_random.median():.3f}")


if __name__ == "__main__":
    main()
