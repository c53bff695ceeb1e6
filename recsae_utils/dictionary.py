"""The concept dictionary: what each SAE latent fires on, in items, genres, decades and popularity, built once
from TRAINING instances. Definitions follow shared/spec/metrics.md ("Concepts and labels") and protocol.md §4.

Inputs are plain arrays: the SAE's TopK code of every instance as `idx` (n, k) latent indices and `val`
(n, k) activations (0 = not active), the history windows `hist` (n, L) most recent first (0 = padding),
and the `items` table of `data.Dataset`.

Everything is vectorised: activations become a per-latent sorted index (`Firing`), histories a sparse
instance x item incidence matrix, and counts, strengths and enrichments are sparse products.

Two statistical choices worth knowing:
- Enrichment is counted over history *slots* (one slot = one distinct item of one sequence) and tested
  with the one-sided Fisher exact test (hypergeometric upper tail). Overlapping windows of one user make
  slots dependent, so p-values are anti-conservative: we pair a strict alpha with a minimum odds ratio.
- Item lift is reported raw, (count/N) / base rate, but items are *ranked* by a shrunk lift
  (count + a) / (N * base + a) (Gamma-Poisson posterior mean, a = `LIFT_PRIOR` pseudo-occurrences at the
  base rate), so one occurrence of a rare item scores at most (1 + a)/a instead of thousands.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import hypergeom, rankdata

from . import artifacts
from .config import RunConfig

# ----------------------------------------------------------------------------------------------------
# Named thresholds (one place; every flag and table refers to these; top_n and item_pool are RunConfig's)

LIFT_PRIOR = 1.0           # pseudo-occurrences at the base rate in the shrunk lift used for ranking
ENRICH_ALPHA = 1e-3        # one-sided Fisher p below this ...
ENRICH_MIN_OR = 1.5        # ... and odds ratio at least this = "significantly enriched"
ENRICH_MIN_SHARE = 0.05    # a card lists a feature only if >= 5% of the latent's top slots hold it (a rare
                           # decade seen in 5 of 1,000 slots can have an odds ratio of 50 yet says little)
GENERIC_FREQ = 0.10        # fires on more than 10% of sequences -> generic
GENERIC_COVERAGE = 0.25    # its top-N sequences hold more than 25% of the catalogue -> generic
POP_FLAG_SPEARMAN = 0.3    # |Spearman(activation, sequence popularity)| at least this -> popularity latent
POP_FLAG_HIGH = 75.0       # popularity_pct at least this (or at most 100 - this) -> popularity latent


# ----------------------------------------------------------------------------------------------------
# Activations: per-latent index, statistics, top sequences


@dataclass
class Firing:
    """Every (instance, latent, value) with value > 0, grouped by latent and sorted by value descending
    (ties: lower instance first): latent j's firings are inst[ptr[j]:ptr[j+1]]. Built once, it gives
    statistics, top sequences, ranks for correlations and stratified samples without re-sorting."""

    ptr: np.ndarray    # (m + 1,)
    inst: np.ndarray   # (nnz,) instance index
    val: np.ndarray    # (nnz,) activation, descending within a latent
    n: int             # number of instances

    @property
    def m(self) -> int:
        return len(self.ptr) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.ptr)

    def latent_of_entries(self) -> np.ndarray:
        return np.repeat(np.arange(self.m), self.counts)


def firing_index(idx: np.ndarray, val: np.ndarray, m: int) -> Firing:
    """Sort the active (instance, latent) pairs by (latent, -value, instance) with one argsort of a packed
    int64 key (value as float32 bits, which order like the floats for values >= 0); much faster than
    a lexsort at 18M entries. Falls back to lexsort when the key does not fit in 63 bits."""
    idx = np.asarray(idx)
    val = np.asarray(val)
    if idx.shape != val.shape or idx.ndim != 2:
        raise ValueError(f"idx and val must be (n, k) arrays of one shape, got {idx.shape} and {val.shape}")
    n, k = idx.shape
    v32 = val.astype(np.float32, copy=False).ravel()
    keep = v32 > 0
    lat = idx.ravel()[keep].astype(np.int64)
    if lat.size and (lat.min() < 0 or lat.max() >= m):
        raise ValueError(f"latent index out of range [0, {m})")
    inst = np.repeat(np.arange(n, dtype=np.int64), k)[keep]
    v = v32[keep]
    inv = (np.uint32(0xFFFFFFFF) - v.view(np.uint32)).astype(np.int64)  # larger value -> smaller key
    ib = max(int(n - 1).bit_length(), 1)
    if max(int(m - 1).bit_length(), 1) + 32 + ib <= 63:
        order = np.argsort((lat << (32 + ib)) | (inv << ib) | inst)  # unique keys: sort order is total
    else:
        order = np.lexsort((inst, inv, lat))
    ptr = np.zeros(m + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(np.bincount(lat, minlength=m))
    return Firing(ptr, inst[order], v[order], n)


@dataclass
class LatentStats:
    """Per latent: how often it fires and how strongly (the dictionary's first table)."""

    n_fire: np.ndarray    # (m,) firing count
    freq: np.ndarray      # (m,) n_fire / n
    mean_act: np.ndarray  # (m,) mean activation where it fires (NaN if dead)
    max_act: np.ndarray   # (m,) max activation (0 if dead)
    n: int


def _stats_from(f: Firing) -> LatentStats:
    cnt = f.counts
    sums = np.bincount(f.latent_of_entries(), weights=f.val.astype(np.float64), minlength=f.m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    mx = np.zeros(f.m)
    live = cnt > 0
    mx[live] = f.val[f.ptr[:-1][live]]  # first entry of each group is its maximum
    return LatentStats(cnt, cnt / max(f.n, 1), mean, mx, f.n)


def latent_stats(idx: np.ndarray, val: np.ndarray, m: int) -> LatentStats:
    """Firing count, frequency, mean and max activation of each of the m latents."""
    return _stats_from(firing_index(idx, val, m))


@dataclass
class TopSequences:
    """Each latent's top-N activating instances, best first; padded with -1 (inst) and 0 (val)."""

    inst: np.ndarray   # (m, N)
    val: np.ndarray    # (m, N)
    count: np.ndarray  # (m,) valid entries per row = min(N, n_fire)


def _top_from(f: Firing, top_n: int) -> TopSequences:
    cnt = np.minimum(f.counts, top_n)
    rows = np.repeat(np.arange(f.m), cnt)
    cols = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    src = f.ptr[:-1][rows] + cols
    inst = np.full((f.m, top_n), -1, dtype=np.int64)
    v = np.zeros((f.m, top_n), dtype=np.float32)
    inst[rows, cols] = f.inst[src]
    v[rows, cols] = f.val[src]
    return TopSequences(inst, v, cnt)


def top_sequences(idx: np.ndarray, val: np.ndarray, m: int, top_n: int = RunConfig.top_n) -> TopSequences:
    """Each latent's top-N instances by activation (ties: lower instance index first)."""
    return _top_from(firing_index(idx, val, m), top_n)


def activation_csr(idx: np.ndarray, val: np.ndarray, m: int) -> sp.csr_matrix:
    """(n, m) CSR of an SAE's codes: row = instance, column = latent, value = activation; zero slots dropped."""
    idx, val = np.asarray(idx), np.asarray(val, dtype=np.float64)
    n, k = idx.shape
    keep = val.ravel() > 0
    A = sp.csr_matrix((val.ravel()[keep], (np.repeat(np.arange(n), k)[keep], idx.ravel()[keep])), shape=(n, m))
    A.sum_duplicates()
    return A



# ----------------------------------------------------------------------------------------------------
# Items: incidence, per-latent item tables, item attributes


def incidence(hist: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Binary instance x item matrix: 1 where the item is in the instance's history window (padding 0
    dropped, repeats counted once). Every item statistic below is a product with it."""
    hist = np.asarray(hist)
    n, L = hist.shape
    flat = hist.ravel()
    keep = flat > 0
    rows = np.repeat(np.arange(n, dtype=np.int64), L)[keep]
    X = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows, flat[keep])), shape=(n, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


def _firing_selection(f: Firing, pool: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Two (m, n) sparse matrices selecting each latent's strongest `pool` firings (all of them when
    pool <= 0): with 1s and with the activations. Read straight off the firing index (values sorted
    descending per latent), so no (m, pool) array is ever built."""
    rank = np.arange(len(f.inst)) - np.repeat(f.ptr[:-1], f.counts)
    keep = rank < pool if pool > 0 else np.ones(len(f.inst), bool)
    rows, cols = f.latent_of_entries()[keep], f.inst[keep]
    ones = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(f.m, f.n))
    return ones, sp.csr_matrix((f.val[keep].astype(np.float64), (rows, cols)), shape=(f.m, f.n))


@dataclass
class ItemTables:
    """Latent x item tables over a pool of each latent's firing sequences (its top N, or all of them), as a
    long table grouped by latent (rows ptr[j]:ptr[j+1], ranked best first by shrunk lift) plus the sparse
    count matrix."""

    ptr: np.ndarray          # (m + 1,)
    item: np.ndarray         # item id
    count: np.ndarray        # pooled sequences of the latent that contain the item
    strength: np.ndarray     # sum of the latent's activation over those sequences
    lift: np.ndarray         # (count / N_j) / base_rate  (raw)
    lift_shrunk: np.ndarray  # (count + LIFT_PRIOR) / (N_j * base_rate + LIFT_PRIOR): the ranking key
    counts: sp.csr_matrix    # (m, n_items) count matrix
    base_rate: np.ndarray    # (n_items,) share of all training sequences holding the item
    df: np.ndarray           # (n_items,) number of training sequences holding the item
    n_top: np.ndarray        # (m,) N_j = sequences behind the latent's row


def firing_item_tables(f: Firing, X: sp.csr_matrix, pool: int = RunConfig.item_pool,
                       lift_prior: float = LIFT_PRIOR, block: int = 256) -> ItemTables:
    """Item tables over each latent's strongest `pool` firings, or all of them (pool = 0: the default):
    counts and strengths by two sparse products (selection @ incidence); lift vs the base rate.

    Why all: a latent's top 50 sequences show only its extreme tail. On ML-1M a label built from them
    described the SAE's latents worse than the raw h_u dimensions (whole-history median detection balanced
    accuracy 0.63 against 0.68); built from all firings, the same labeler reaches 0.85 against 0.72, because
    an SAE latent fires on a compact set of movies that the tail samples only in part.

    The shrunk lift is the posterior mean of the rate ratio when count ~ Poisson(N * base * lambda) with
    a Gamma(a, a) prior on lambda (mean 1): it equals the raw lift for well-supported items and pulls
    items seen once or twice towards 1, so rare one-offs do not top every list."""
    sel_c, sel_s = _firing_selection(f, pool)
    n_per = np.minimum(f.counts, pool) if pool > 0 else f.counts
    n = X.shape[0]
    df = np.asarray(X.getnnz(axis=0), dtype=np.float64)
    base = df / max(n, 1)
    cols, blocks = [], []
    for j0 in range(0, max(f.m, 1), block):  # a block of latents at a time: the products' temporaries stay small
        C = (sel_c[j0:j0 + block] @ X).tocsr()
        S = (sel_s[j0:j0 + block] @ X).tocsr()
        C.sort_indices()
        S.sort_indices()
        cc = C.tocoo()
        ss = S.tocoo()
        if not (np.array_equal(cc.row, ss.row) and np.array_equal(cc.col, ss.col)):  # same pattern by construction
            s_data = np.asarray(S[cc.row, cc.col]).ravel()
        else:
            s_data = ss.data
        lat, item, count = cc.row.astype(np.int64) + j0, cc.col.astype(np.int64), np.rint(cc.data).astype(np.int64)
        nj = n_per[lat].astype(np.float64)
        lift = (count / nj) / base[item]
        shrunk = (count + lift_prior) / (nj * base[item] + lift_prior)
        order = np.lexsort((item, -s_data, -count, -shrunk, lat))  # lat first: blocks concatenate in order
        cols.append((item[order], count[order], s_data[order].astype(np.float64), lift[order], shrunk[order]))
        C.data = np.rint(C.data)
        blocks.append(C)
        del S, cc, ss, s_data, lat, nj, lift, shrunk, order
    item, count, strength, lift, shrunk = (np.concatenate(c) for c in zip(*cols))
    C = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    ptr = C.indptr.astype(np.int64)  # a latent's rows of the long table are its row of C, in the same count
    return ItemTables(ptr, item, count, strength, lift, shrunk, C, base, df, np.asarray(n_per).copy())


@dataclass
class ItemFeatures:
    """Categorical item attributes as one sparse (n_items, F) 0/1 matrix: genres (or, for datasets without
    genres, the category column), then release decades. `kind[f]` is 'genre' or 'decade'."""

    names: list[str]          # 'genre:Comedy', 'decade:1990', ...
    kind: np.ndarray          # (F,) 'genre' | 'decade'
    value: list               # genre name (str) or decade (int) per feature
    M: sp.csr_matrix          # (n_items, F)
    genre_source: str | None  # column the 'genre' kind came from: 'genres', 'i_category' or None

    def kind_mask(self, kind: str) -> np.ndarray:
        return self.kind == kind


def _as_list(g) -> list[str]:
    if g is None or (isinstance(g, float) and math.isnan(g)):
        return []
    if isinstance(g, str):
        return [s for s in g.split("|") if s]
    return [str(s) for s in g if s is not None and str(s) != ""]


def item_features(items: pd.DataFrame, n_items: int) -> ItemFeatures:
    """Genres (list column 'genres') or category ('i_category'), and decade of 'year' when present."""
    ids = items["item_id"].to_numpy().astype(np.int64)
    rows, cols, names, kinds, values = [], [], [], [], []
    source = None
    if "genres" in items.columns:
        source = "genres"
        lists = [_as_list(g) for g in items["genres"].tolist()]
    elif "i_category" in items.columns:
        source = "i_category"
        lists = [[] if pd.isna(c) else [str(c)] for c in items["i_category"].tolist()]
    else:
        lists = []
    if lists:
        lens = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        flat = np.array([g for x in lists for g in x], dtype=object)
        uniq, code = np.unique(flat.astype(str), return_inverse=True) if flat.size else (np.array([]), np.array([], int))
        rows.append(np.repeat(ids, lens))
        cols.append(code.astype(np.int64))
        names += [f"genre:{u}" for u in uniq]
        kinds += ["genre"] * len(uniq)
        values += [str(u) for u in uniq]
    if "year" in items.columns:
        year = pd.to_numeric(items["year"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(year)
        dec = (year[ok] // 10 * 10).astype(np.int64)
        udec, code = np.unique(dec, return_inverse=True)
        rows.append(ids[ok])
        cols.append(code.astype(np.int64) + len(names))
        names += [f"decade:{d}" for d in udec]
        kinds += ["decade"] * len(udec)
        values += [int(d) for d in udec]
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    M = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n_items, len(names)))
    M.sum_duplicates()
    M.data[:] = 1.0
    return ItemFeatures(names, np.array(kinds, dtype=object), values, M, source)



# ----------------------------------------------------------------------------------------------------
# Enrichment (2 x 2 tables, Fisher exact) and popularity


def odds_ratio_2x2(a, b, c, d) -> np.ndarray:
    """Odds ratio (a d) / (b c) of the table [[a, b], [c, d]]; where any cell is 0, the Haldane-Anscombe
    correction (+0.5 to every cell) keeps it finite (cards are JSON)."""
    a, b, c, d = (np.asarray(x, dtype=np.float64) for x in (a, b, c, d))
    z = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    h = np.where(z, 0.5, 0.0)
    return ((a + h) * (d + h)) / ((b + h) * (c + h))


def fisher_greater(a, b, c, d) -> np.ndarray:
    """One-sided Fisher exact p-value P(X >= a) for enrichment of row 1 in column 1 of [[a, b], [c, d]]:
    the hypergeometric upper tail, vectorised through scipy.stats.hypergeom.sf."""
    a, b, c, d = (np.asarray(x, dtype=np.int64) for x in (a, b, c, d))
    return hypergeom.sf(a - 1, a + b + c + d, a + c, a + b)


@dataclass
class Enrichment:
    """Per latent x feature: slots of the latent's pooled firing sequences (`item_pool`) with the feature vs
    all training slots."""

    a: np.ndarray           # (m, F) pooled slots with the feature
    top_slots: np.ndarray   # (m, F) pooled slots with any feature of that kind (genre/decade known)
    all_with: np.ndarray    # (F,) all training slots with the feature
    all_slots: np.ndarray   # (F,) all training slots with a known feature of that kind
    odds_ratio: np.ndarray  # (m, F)
    p_value: np.ndarray     # (m, F) one-sided Fisher (enrichment)

    @property
    def share_top(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.a / self.top_slots

    @property
    def share_all(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.all_with / self.all_slots


def enrichment(counts: sp.csr_matrix, df: np.ndarray, feats: ItemFeatures) -> Enrichment:
    """2 x 2 table per (latent, feature): rows = slots in the latent's pooled sequences vs the rest of the
    training slots, columns = item has the feature vs has another feature of the same kind. Slots whose
    item has no feature of a kind (e.g. unknown year) are left out of that kind's tables."""
    F = len(feats.names)
    m = counts.shape[0]
    if F == 0:
        z = np.zeros((m, 0))
        return Enrichment(z, z, np.zeros(0), np.zeros(0), z, z)
    M = feats.M.astype(np.float64)
    a = np.asarray((counts @ M).todense())
    all_with = np.asarray(df @ M).ravel()
    top_slots = np.zeros((m, F))
    all_slots = np.zeros(F)
    for kind in np.unique(feats.kind):  # two kinds at most
        cols = feats.kind == kind
        known = (np.asarray(M[:, cols].sum(axis=1)).ravel() > 0).astype(np.float64)
        top_slots[:, cols] = np.asarray(counts @ known).reshape(-1, 1)
        all_slots[cols] = float(df @ known)
    b = top_slots - a
    c = all_with[None, :] - a
    d = (all_slots[None, :] - top_slots) - c
    orr = odds_ratio_2x2(a, b, c, d)
    p = fisher_greater(a, b, c, d)
    empty = top_slots <= 0
    orr[empty], p[empty] = np.nan, np.nan
    return Enrichment(a, top_slots, all_with, all_slots, orr, p)


def item_popularity_pct(popularity: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Popularity percentile (0-100) of each item among consumed history slots (mid-rank for ties), so a
    random sequence's items average 50 and a latent's `popularity_pct` reads against 50."""
    pop = np.asarray(popularity, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if total <= 0:
        return np.full(len(pop), 50.0)
    u, inv = np.unique(pop, return_inverse=True)
    wu = np.bincount(inv, weights=w, minlength=len(u))
    below = np.cumsum(wu) - wu
    return 100.0 * (below[inv] + 0.5 * wu[inv]) / total


def sequence_popularity(X: sp.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Mean of a per-item value over each sequence's (distinct) history items; NaN for empty rows."""
    nnz = np.diff(X.indptr)
    s = X @ np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(nnz > 0, s / np.maximum(nnz, 1), np.nan)


def popularity_spearman(f: Firing, seq_pop: np.ndarray) -> np.ndarray:
    """Spearman correlation, over ALL instances, of latent activation (0 where it does not fire) and the
    sequence's mean item popularity, without the dense (n, m) matrix: the zeros share one mid-rank, so
    only the firing entries need visiting. Ties among non-zero activations take ordinal ranks."""
    n, m = f.n, f.m
    rp = rankdata(np.nan_to_num(seq_pop, nan=np.nanmedian(seq_pop) if np.isfinite(seq_pop).any() else 0.0))
    zp = rp - rp.mean()
    ssp = float(zp @ zp)
    nj = f.counts.astype(np.float64)
    lat = f.latent_of_entries()
    pos = np.arange(len(f.inst)) - f.ptr[:-1][lat]       # 0 = largest value
    n0 = n - nj
    r = n0[lat] + (nj[lat] - pos)                         # ascending rank of a firing entry
    c0 = (n0 + 1) / 2.0                                   # shared mid-rank of the zeros
    mbar = (n + 1) / 2.0
    cov = np.bincount(lat, weights=(r - c0[lat]) * zp[f.inst], minlength=m)
    var = n0 * (c0 - mbar) ** 2 + np.bincount(lat, weights=(r - mbar) ** 2, minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = cov / np.sqrt(var * ssp)
    rho[(nj == 0) | (var <= 0)] = np.nan
    return rho



# ----------------------------------------------------------------------------------------------------
# The dictionary object, its tables, and the output side (promoted items)


@dataclass
class ConceptDictionary:
    """Everything the cards, labels, tables and detection scores read, built once from training data."""

    m: int
    n_items: int
    top_n: int
    firing: Firing
    stats: LatentStats
    top: TopSequences
    tables: ItemTables
    feats: ItemFeatures
    enrich: Enrichment
    X: sp.csr_matrix              # training incidence (n, n_items)
    hist: np.ndarray              # training histories (n, L), most recent first
    item_pct: np.ndarray          # (n_items,) popularity percentile among training slots
    popularity: np.ndarray        # (n_items,) train interaction count
    seq_pop: np.ndarray           # (n,) mean item popularity of each training sequence
    pop_spearman: np.ndarray      # (m,)
    popularity_pct: np.ndarray    # (m,) count-weighted mean item_pct over the pooled sequences' items
    coverage: np.ndarray          # (m,) distinct items in the top-N sequences / catalogue size
    generic: np.ndarray           # (m,) bool
    popularity_flag: np.ndarray   # (m,) bool
    display: np.ndarray           # (n_items,) object: text of each item for examples
    meta: dict = field(default_factory=dict)  # per-item title/year/genres/category/co-purchase lists

    @property
    def live(self) -> np.ndarray:
        return np.flatnonzero(self.stats.n_fire > 0)


def _item_meta(items: pd.DataFrame, n_items: int) -> dict:
    """Per-item lookups (object arrays indexed by item id) for cards, examples and explanations."""
    ids = items["item_id"].to_numpy().astype(np.int64).tolist()

    def col(name, conv, default=None):
        out = np.empty(n_items, dtype=object)
        for i in range(n_items):
            out[i] = default() if callable(default) else default
        if name in items.columns:
            for i, v in zip(ids, items[name].tolist()):  # one pass over the catalogue
                out[i] = conv(v)
        return out

    def missing(v) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT

    def opt_str(v):
        return None if missing(v) else str(v)

    def opt_int(v):
        try:
            return None if missing(v) else int(v)
        except (TypeError, ValueError):
            return None

    def id_list(v):
        if isinstance(v, str):
            return [int(x) for x in re.findall(r"\d+", v)]
        if missing(v) or not hasattr(v, "__iter__"):
            return []
        return [int(x) for x in v]

    meta = {"title": col("title", opt_str), "year": col("year", opt_int),
            "category": col("i_category", opt_str),
            "complement": col("r_complement", id_list, list), "substitute": col("r_substitute", id_list, list)}
    if "genres" in items.columns:
        meta["genres"] = col("genres", _as_list, list)
    else:  # the category stands in for genres on cards
        meta["genres"] = col("i_category", lambda c: [] if missing(c) else [str(c)], list)
    disp = np.empty(n_items, dtype=object)
    for i in range(n_items):
        t, c = meta["title"][i], meta["category"][i]
        disp[i] = t if t is not None else (f"item {i} [{c}]" if c is not None else f"item {i}")
    meta["display"] = disp
    meta["has_titles"] = any(t is not None for t in meta["title"])
    return meta


def build_dictionaries(idx: np.ndarray, val: np.ndarray, hist: np.ndarray, items: pd.DataFrame, m: int,
                       top_n: int = RunConfig.top_n, item_pool: int = RunConfig.item_pool) -> ConceptDictionary:
    """Build every per-latent table from TRAINING instances (held-out data is kept for the scores): the
    top-N sequences (cards' examples, the coverage flag) and, over `item_pool` firings per latent (0 = all;
    `firing_item_tables`), the item tables, enrichment and popularity behind the labels."""
    n_items = int(items["item_id"].max()) + 1
    hist = np.asarray(hist)
    if hist.size and hist.max() >= n_items:
        n_items = int(hist.max()) + 1
    if len(hist) != len(idx):
        raise ValueError(f"hist has {len(hist)} rows but idx has {len(idx)}")
    f = firing_index(idx, val, m)
    stats = _stats_from(f)
    top = _top_from(f, top_n)
    X = incidence(hist, n_items)
    tables = firing_item_tables(f, X, item_pool)
    feats = item_features(items, n_items)
    enr = enrichment(tables.counts, tables.df, feats)
    popularity = np.zeros(n_items)
    popularity[items["item_id"].to_numpy()] = items["popularity"].to_numpy(dtype=np.float64)
    item_pct = item_popularity_pct(popularity, tables.df)
    seq_pop = sequence_popularity(X, popularity)
    rho = popularity_spearman(f, seq_pop)
    slots = np.asarray(tables.counts.sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        pop_pct = np.where(slots > 0, (tables.counts @ item_pct) / slots, np.nan)
    coverage = np.diff((_firing_selection(f, top_n)[0] @ X).tocsr().indptr) / max(n_items - 1, 1)
    generic = (stats.freq > GENERIC_FREQ) | (coverage > GENERIC_COVERAGE)
    popflag = (np.nan_to_num(np.abs(rho)) >= POP_FLAG_SPEARMAN) | (np.nan_to_num(pop_pct, nan=50.0) >= POP_FLAG_HIGH) \
        | (np.nan_to_num(pop_pct, nan=50.0) <= 100.0 - POP_FLAG_HIGH)
    meta = _item_meta(items, n_items)
    return ConceptDictionary(m, n_items, top_n, f, stats, top, tables, feats, enr, X, hist, item_pct, popularity,
                             seq_pop, rho, pop_pct, coverage, generic & (stats.n_fire > 0),
                             popflag & (stats.n_fire > 0), meta["display"], meta)


def promoted_items(W_dec: np.ndarray, E: np.ndarray, top: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Items whose embedding has the largest dot product with each latent's decoder direction: what
    turning the latent up pushes into the ranking. Returns (item ids, scores), each (m, top); row 0 of E
    (padding) is never returned."""
    W = np.asarray(W_dec, dtype=np.float64)
    Ei = np.asarray(E, dtype=np.float64)[1:]
    s = W @ Ei.T
    top = min(top, s.shape[1])
    part = np.argpartition(-s, top - 1, axis=1)[:, :top]
    ps = np.take_along_axis(s, part, 1)
    o = np.lexsort((part, -ps), axis=1)
    ids = np.take_along_axis(part, o, 1)
    return ids + 1, np.take_along_axis(ps, o, 1)


def label_array(labels, m: int) -> np.ndarray:
    """Labels given as a sequence, a {latent: name or {'name': ...}} mapping, or None -> (m,) object array."""
    out = np.array([f"latent {j}" for j in range(m)], dtype=object)
    if labels is None:
        return out
    items = labels.items() if isinstance(labels, Mapping) else enumerate(labels)
    for j, lab in items:
        if 0 <= int(j) < m and lab is not None:
            out[int(j)] = lab["name"] if isinstance(lab, Mapping) else str(lab)
    return out


def dictionary_tables(d: ConceptDictionary, labels=None, promoted: tuple[np.ndarray, np.ndarray] | None = None,
                      max_items: int | None = 200) -> dict[str, pd.DataFrame]:
    """The dictionaries as tidy DataFrames: 'latents', 'latent_items' (count, strength, lift, rank),
    'genre_enrichment', 'decade_enrichment', and 'promoted' when `promoted_items` output is given."""
    m = d.m
    lab = label_array(labels, m)
    out = {"latents": pd.DataFrame({
        "latent": np.arange(m), "n_fire": d.stats.n_fire, "freq": d.stats.freq, "mean_act": d.stats.mean_act,
        "max_act": d.stats.max_act, "n_top": d.top.count, "pop_spearman": d.pop_spearman,
        "popularity_pct": d.popularity_pct, "coverage": d.coverage, "generic": d.generic,
        "popularity": d.popularity_flag, "label": lab})}
    t = d.tables
    lat = np.repeat(np.arange(m), np.diff(t.ptr))
    rank = np.arange(len(lat)) - t.ptr[:-1][lat] + 1
    keep = np.ones(len(lat), bool) if max_items is None else rank <= max_items
    out["latent_items"] = pd.DataFrame({"latent": lat[keep], "rank": rank[keep], "item_id": t.item[keep],
                                        "count": t.count[keep], "strength": t.strength[keep],
                                        "lift": t.lift[keep], "lift_shrunk": t.lift_shrunk[keep]})
    e = d.enrich
    for kind, key in (("genre", "genre"), ("decade", "decade")):
        cols = np.flatnonzero(d.feats.kind == kind)
        jj, cc = np.meshgrid(np.arange(m), cols, indexing="ij")
        jj, cc = jj.ravel(), cc.ravel()
        live = d.stats.n_fire[jj] > 0
        jj, cc = jj[live], cc[live]
        vals = np.array(d.feats.value, dtype=object)[cc] if len(cc) else np.array([], dtype=object)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{kind}_enrichment"] = pd.DataFrame({
                "latent": jj, key: vals if kind == "genre" else vals.astype(np.int64),
                "top_count": e.a[jj, cc], "top_slots": e.top_slots[jj, cc], "share_top": e.share_top[jj, cc],
                "share_all": e.share_all[cc], "odds_ratio": e.odds_ratio[jj, cc], "p_value": e.p_value[jj, cc],
                "significant": (e.p_value[jj, cc] < ENRICH_ALPHA) & (e.odds_ratio[jj, cc] >= ENRICH_MIN_OR)
                & (e.share_top[jj, cc] >= ENRICH_MIN_SHARE)})
    if promoted is not None:
        ids, sc = promoted
        r = np.arange(ids.shape[1])
        out["promoted"] = pd.DataFrame({"latent": np.repeat(np.arange(ids.shape[0]), ids.shape[1]),
                                        "rank": np.tile(r + 1, ids.shape[0]), "item_id": ids.ravel(),
                                        "score": sc.ravel()})
    return out


def save_dictionaries(tables: Mapping[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write each table as <name>.parquet and <name>.csv, atomically (artifacts.atomic_path)."""
    out_dir = Path(out_dir)
    paths = []
    for name, df in tables.items():
        paths.append(artifacts.write_parquet(out_dir / f"{name}.parquet", df))
        with artifacts.atomic_path(out_dir / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
        paths.append(out_dir / f"{name}.csv")
    return paths

