"""Label-free coherence of a latent: do its top items share genres (categories) more than random items of
the same popularity do? No label and no detection threshold is involved, so it checks the detection scores
from another side, for the SAE and its baselines alike.

Coherence of an item set = mean pairwise Jaccard similarity of the items' genre sets (pairs where neither
item has a genre are left out). A latent's set: its top COHERENCE_TOP items by shrunk lift among those in at
least EXEMPLAR_MIN_COUNT of its firing sequences (the dictionary's ranking). Its reference: COHERENCE_DRAWS
random sets with the same popularity-bin composition (item popularity quantile bins over the items seen in
training), so a latent of blockbusters is compared with blockbusters.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .cards import EXEMPLAR_MIN_COUNT
from .dictionary import ConceptDictionary

COHERENCE_TOP = 10       # a latent's top items by shrunk lift
COHERENCE_DRAWS = 100    # popularity-matched random item sets per latent
COHERENCE_BINS = 10      # item popularity quantile bins for the matching
COHERENCE_BLOCK = 64     # latents per block (memory of the random sets' genre arrays)


def top_items(d: ConceptDictionary, n: int = COHERENCE_TOP, min_count: int = EXEMPLAR_MIN_COUNT) -> np.ndarray:
    """(m, n) int64: each latent's first n items of its item table (ranked by shrunk lift) with count >=
    min_count, padded with -1."""
    t = d.tables
    lat = np.repeat(np.arange(d.m), np.diff(t.ptr))
    keep = t.count >= min_count
    lat_k, item_k = lat[keep], t.item[keep]
    rank = np.arange(len(lat_k)) - np.searchsorted(lat_k, np.arange(d.m))[lat_k]
    sel = rank < n
    out = np.full((d.m, n), -1, dtype=np.int64)
    out[lat_k[sel], rank[sel]] = item_k[sel]
    return out


def mean_pairwise_jaccard(G: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """Mean Jaccard similarity of the genre sets over the distinct-item pairs of each item set.
    G: (n_items, g) 0/1 genre matrix; sets: (..., n) item ids, -1 = none. Pairs of the same item and pairs
    where neither item has a genre are left out; NaN where no pair is left."""
    sets = np.asarray(sets)
    ok = sets >= 0
    A = G[np.where(ok, sets, 0)].astype(np.float32) * ok[..., None]       # (..., n, g)
    inter = np.einsum("...ig,...jg->...ij", A, A)
    size = A.sum(-1)
    union = size[..., :, None] + size[..., None, :] - inter
    n = sets.shape[-1]
    pair = (ok[..., :, None] & ok[..., None, :] & (sets[..., :, None] != sets[..., None, :])
            & np.triu(np.ones((n, n), bool), 1) & (union > 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(pair, inter / np.where(union > 0, union, 1), 0.0)
        return jac.sum((-1, -2)) / pair.sum((-1, -2))


def genre_matrix(d: ConceptDictionary) -> np.ndarray:
    """(n_items, g) 0/1 of the dictionary's genre (category) features."""
    cols = np.flatnonzero(d.feats.kind == "genre")
    return np.asarray(d.feats.M[:, cols].todense(), dtype=np.float32) if cols.size else np.zeros((d.n_items, 0), np.float32)


def genre_coherence(d: ConceptDictionary, n: int = COHERENCE_TOP, draws: int = COHERENCE_DRAWS,
                    bins: int = COHERENCE_BINS, seed: int = 0) -> pd.DataFrame:
    """Per latent: its top items' coherence, and the mean and 95th percentile of the coherence of `draws`
    popularity-matched random sets (each top item replaced by a random item of its popularity bin)."""
    G = genre_matrix(d)
    top = top_items(d, n)
    seen = np.flatnonzero(d.tables.df > 0)
    pop = d.popularity[seen]
    edges = np.quantile(pop, np.linspace(0, 1, bins + 1)[1:-1]) if len(seen) else np.zeros(0)
    b_of = np.full(d.n_items, -1, dtype=np.int64)
    b_of[seen] = np.searchsorted(edges, pop, side="right")
    order = seen[np.argsort(b_of[seen], kind="stable")]
    size = np.bincount(b_of[seen], minlength=bins)
    start = np.cumsum(size) - size
    rng = np.random.default_rng(seed)
    own = mean_pairwise_jaccard(G, top)
    rmean = np.full(d.m, np.nan)
    rp95 = np.full(d.m, np.nan)
    for j0 in range(0, d.m, COHERENCE_BLOCK):
        t = top[j0:j0 + COHERENCE_BLOCK]
        b = np.where(t >= 0, b_of[np.maximum(t, 0)], -1)
        u = rng.random((len(t), draws, n))
        bb = np.maximum(b, 0)[:, None, :]
        pick = order[np.minimum(start[bb] + np.floor(u * size[bb]).astype(np.int64), len(order) - 1)] \
            if len(order) else np.zeros_like(u, dtype=np.int64)
        rs = np.where((b >= 0)[:, None, :], pick, -1)
        c = mean_pairwise_jaccard(G, rs)                                    # (block, draws)
        with warnings.catch_warnings():                                     # all-NaN rows: latents without a set
            warnings.simplefilter("ignore", RuntimeWarning)
            rmean[j0:j0 + len(t)] = np.nanmean(c, 1)
            rp95[j0:j0 + len(t)] = np.nanquantile(c, 0.95, axis=1)
    return pd.DataFrame({"latent": np.arange(d.m), "n_items": (top >= 0).sum(1), "coherence": own,
                         "random_mean": rmean, "random_p95": rp95})


def coherence_summary(df: pd.DataFrame, live: np.ndarray | None = None) -> dict:
    """Per model: latents with a coherence (>= 2 top items), the median coherence and the median of the
    popularity-matched random means, and the share of latents above their random mean and above their
    random 95th percentile."""
    s = df if live is None else df[df["latent"].isin(np.flatnonzero(live))]
    s = s[np.isfinite(s["coherence"]) & np.isfinite(s["random_mean"])]
    if not len(s):
        return {"n": 0, "median": None, "median_random": None, "share_above_random": None,
                "share_above_random_p95": None}
    return {"n": int(len(s)), "median": float(s["coherence"].median()),
            "median_random": float(s["random_mean"].median()),
            "share_above_random": float((s["coherence"] > s["random_mean"]).mean()),
            "share_above_random_p95": float((s["coherence"] > s["random_p95"]).mean())}
