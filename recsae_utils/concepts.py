"""Concepts: what each SAE latent stands for, in items, genres, decades and popularity, and how much of a
recommendation each latent explains. Definitions follow shared/spec/metrics.md ("Concepts and labels")
and protocol.md §4.

Inputs are plain arrays: the SAE's TopK code of every instance as `idx` (n, k) latent indices and `val`
(n, k) activations (0 = not active), the history windows `hist` (n, L) most recent first (0 = padding),
and the `items` table of `data.Dataset`. Training instances build the dictionaries (`build_dictionaries`);
held-out instances are only used for scores (`detection_scores`).

Everything is vectorised: activations become a per-latent sorted index (`Firing`), histories a sparse
instance x item incidence matrix, and counts, strengths and enrichments are sparse products. Python
loops run over latents only where the output is one Python object per latent (cards, labels).

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
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import hypergeom, rankdata

from . import artifacts

# ----------------------------------------------------------------------------------------------------
# Named thresholds (one place; every flag and label refers to these)

TOP_N = 50                 # top-activating training sequences per latent shown on cards (and the coverage flag)
ITEM_POOL = 0              # training firings per latent behind item tables, enrichment and labels (0 = all of them)
LIFT_PRIOR = 1.0           # pseudo-occurrences at the base rate in the shrunk lift used for ranking
CARD_TOP_ITEMS = 20        # items per card
CARD_EXAMPLES = 5          # example sequences per card
CARD_EXAMPLE_LEN = 9       # last <= 9 history titles per example (protocol.md §4.2)
CARD_MAX_ENRICH = 8        # enrichment entries per card (enriched ones only, significant first)
ENRICH_ALPHA = 1e-3        # one-sided Fisher p below this ...
ENRICH_MIN_OR = 1.5        # ... and odds ratio at least this = "significantly enriched"
ENRICH_MIN_SHARE = 0.05    # a card lists a feature only if >= 5% of the latent's top slots hold it (a rare
                           # decade seen in 5 of 1,000 slots can have an odds ratio of 50 yet says little)
LABEL_MAX_GENRES = 2       # genres (or categories) named in an offline label
LABEL_MAX_DECADES = 1      # decades named in an offline label
LABEL_MAX_ITEMS = 20       # exemplar items named in an offline label's description (and in its signature)
LABEL_NAME_ITEMS = 3       # ... of which the first few also appear in its name
EXEMPLAR_MIN_COUNT = 3     # an exemplar is in at least 3 of the latent's pooled firing sequences ...
EXEMPLAR_MIN_LIFT = 2.0    # ... with shrunk lift at least 2 (twice its base rate)
MIN_POS_SUMMARY = 5        # score_summary counts a latent only with at least 5 held-out positives
POP_HIGH = 60.0            # popularity_pct >= this: "popular" (50 = a typical consumed item)
POP_LOW = 40.0             # popularity_pct <= this: "niche"
GENERIC_FREQ = 0.10        # fires on more than 10% of sequences -> generic
GENERIC_COVERAGE = 0.25    # its top-N sequences hold more than 25% of the catalogue -> generic
POP_FLAG_SPEARMAN = 0.3    # |Spearman(activation, sequence popularity)| at least this -> popularity latent
POP_FLAG_HIGH = 75.0       # popularity_pct at least this (or at most 100 - this) -> popularity latent
WINDOWS = (1, 3, 9)         # history windows (most recent items) of the detection sweep, besides the whole history
STRONG_Q = 0.5             # the sweep's second view: positives = each latent's upper half of its own firings
CALIB_POS = 200            # training positives per latent for the detection threshold (activation-stratified)
CALIB_NEG = 5000           # shared pool of random training sequences for the threshold's negatives
POP_BINS = 10              # popularity quantile bins for the matched negatives


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


def top_sequences(idx: np.ndarray, val: np.ndarray, m: int, top_n: int = TOP_N) -> TopSequences:
    """Each latent's top-N instances by activation (ties: lower instance index first)."""
    return _top_from(firing_index(idx, val, m), top_n)


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


def firing_item_tables(f: Firing, X: sp.csr_matrix, pool: int = ITEM_POOL,
                       lift_prior: float = LIFT_PRIOR) -> ItemTables:
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
    C = (sel_c @ X).tocsr()
    S = (sel_s @ X).tocsr()
    C.sort_indices()
    S.sort_indices()
    cc = C.tocoo()
    ss = S.tocoo()
    if not (np.array_equal(cc.row, ss.row) and np.array_equal(cc.col, ss.col)):  # same pattern by construction
        ss = S[cc.row, cc.col]
        s_data = np.asarray(ss).ravel()
    else:
        s_data = ss.data
    lat, item, count = cc.row.astype(np.int64), cc.col.astype(np.int64), np.rint(cc.data).astype(np.int64)
    nj = n_per[lat].astype(np.float64)
    lift = (count / nj) / base[item]
    shrunk = (count + lift_prior) / (nj * base[item] + lift_prior)
    order = np.lexsort((item, -s_data, -count, -shrunk, lat))
    m = f.m
    ptr = np.zeros(m + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(np.bincount(lat, minlength=m))
    C.data = np.rint(C.data)
    return ItemTables(ptr, item[order], count[order], s_data[order].astype(np.float64), lift[order],
                      shrunk[order], C, base, df, np.asarray(n_per).copy())


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
# The dictionary object


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
                       top_n: int = TOP_N, item_pool: int = ITEM_POOL) -> ConceptDictionary:
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


# ----------------------------------------------------------------------------------------------------
# Output side and per-instance / per-item views


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


def _label_array(labels, m: int) -> np.ndarray:
    """Labels given as a sequence, a {latent: name or {'name': ...}} mapping, or None -> (m,) object array."""
    out = np.array([f"latent {j}" for j in range(m)], dtype=object)
    if labels is None:
        return out
    items = labels.items() if isinstance(labels, Mapping) else enumerate(labels)
    for j, lab in items:
        if 0 <= int(j) < m and lab is not None:
            out[int(j)] = lab["name"] if isinstance(lab, Mapping) else str(lab)
    return out


def instance_concepts(idx: np.ndarray, val: np.ndarray, labels=None, top: int = 5,
                      m: int | None = None) -> pd.DataFrame:
    """Each instance's `top` strongest active latents: DataFrame(instance, rank, latent, activation, label)."""
    idx, val = np.atleast_2d(idx), np.atleast_2d(val).astype(np.float64)
    m = m or int(idx.max()) + 1
    top = min(top, idx.shape[1])
    o = np.lexsort((idx, -val), axis=1)[:, :top]
    li, lv = np.take_along_axis(idx, o, 1), np.take_along_axis(val, o, 1)
    ok = lv > 0
    inst, rank = np.nonzero(ok)
    lat = li[ok]
    return pd.DataFrame({"instance": inst, "rank": rank + 1, "latent": lat, "activation": lv[ok],
                         "label": _label_array(labels, m)[lat]})


def item_latent_strength(idx: np.ndarray, val: np.ndarray, hist: np.ndarray, n_items: int,
                         m: int | None = None) -> sp.csr_matrix:
    """(n_items, m) total activation strength: sum of latent j's activation over ALL sequences whose
    history holds item i (one sparse product X^T A)."""
    idx, val = np.asarray(idx), np.asarray(val, dtype=np.float64)
    m = m or int(idx.max()) + 1
    n, k = idx.shape
    keep = val.ravel() > 0
    A = sp.csr_matrix((val.ravel()[keep], (np.repeat(np.arange(n), k)[keep], idx.ravel()[keep])), shape=(n, m))
    X = incidence(hist, n_items)
    return (X.T.tocsr().astype(np.float64) @ A).tocsr()


def item_concepts(idx: np.ndarray, val: np.ndarray, hist: np.ndarray, n_items: int, labels=None,
                  top: int = 5, m: int | None = None) -> pd.DataFrame:
    """Each item's top concepts by total activation strength over the sequences that contain it:
    DataFrame(item_id, rank, latent, strength, share, label); share = strength / item's total."""
    m = m or int(np.asarray(idx).max()) + 1
    S = item_latent_strength(idx, val, hist, n_items, m).tocoo()
    item, lat, s = S.row.astype(np.int64), S.col.astype(np.int64), S.data
    order = np.lexsort((lat, -s, item))
    item, lat, s = item[order], lat[order], s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(item)) + 1]
    rank = np.arange(len(item)) - np.repeat(starts, np.diff(np.r_[starts, len(item)]))
    tot = np.bincount(item, weights=s, minlength=n_items)
    keep = rank < top
    return pd.DataFrame({"item_id": item[keep], "rank": rank[keep] + 1, "latent": lat[keep],
                         "strength": s[keep], "share": s[keep] / tot[item[keep]],
                         "label": _label_array(labels, m)[lat[keep]]})


# ----------------------------------------------------------------------------------------------------
# Cards, tables, saving


def _enrich_entries(d: ConceptDictionary, j: int, kind: str, key: str) -> list[dict]:
    """Enriched features (OR > 1, share of top slots >= ENRICH_MIN_SHARE) of latent j, significant ones
    first (by OR), then the rest by p."""
    cols = np.flatnonzero(d.feats.kind == kind)
    if cols.size == 0:
        return []
    orr, p = d.enrich.odds_ratio[j, cols], d.enrich.p_value[j, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = d.enrich.a[j, cols] / d.enrich.top_slots[j, cols]
    ok = np.isfinite(orr) & (orr > 1) & (d.enrich.a[j, cols] > 0) & (share >= ENRICH_MIN_SHARE)
    cols, orr, p = cols[ok], orr[ok], p[ok]
    sig = (p < ENRICH_ALPHA) & (orr >= ENRICH_MIN_OR)
    o = np.lexsort((cols, np.where(sig, -orr, p), ~sig))[:CARD_MAX_ENRICH]
    return [{key: d.feats.value[cols[i]], "odds_ratio": float(orr[i]), "p_value": float(p[i])} for i in o]


def _context(d: ConceptDictionary, j: int, top_items: np.ndarray) -> str:
    """Free text for datasets without titles: category enrichment and the top items' co-purchase ids."""
    if d.meta.get("has_titles"):
        return ""
    parts = []
    cats = _enrich_entries(d, j, "genre", "genre")[:5]
    if cats:
        parts.append("enriched categories: " + ", ".join(f"{c['genre']} (OR {c['odds_ratio']:.1f})" for c in cats))
    co = []
    for i in top_items[:5]:
        comp, sub = d.meta["complement"][i] or [], d.meta["substitute"][i] or []
        if comp or sub:
            s = f"item {i}" + (f" [{d.meta['category'][i]}]" if d.meta["category"][i] else "")
            if comp:
                s += " complements " + ", ".join(map(str, comp[:5]))
            if sub:
                s += ("; " if comp else "") + " substitutes " + ", ".join(map(str, sub[:5]))
            co.append(s)
    if co:
        parts.append("co-purchases of top items: " + " | ".join(co))
    return "; ".join(parts)


def latent_cards(d: ConceptDictionary, n_items: int = CARD_TOP_ITEMS,
                 n_examples: int = CARD_EXAMPLES) -> list[dict]:
    """One JSON-ready dict per live latent in the schema the LLM labeler consumes (see module tests)."""
    t, meta = d.tables, d.meta
    title, year, genres = meta["title"], meta["year"], meta["genres"]
    cards = []
    for j in d.live.tolist():
        a, b = t.ptr[j], min(t.ptr[j + 1], t.ptr[j] + n_items)
        its = t.item[a:b]
        top_items = [{"item_id": int(i), "title": title[i], "year": year[i], "genres": list(genres[i]),
                      "count": int(c), "strength": float(s), "lift": float(lf)}
                     for i, c, s, lf in zip(its.tolist(), t.count[a:b].tolist(), t.strength[a:b].tolist(),
                                            t.lift[a:b].tolist())]
        ne = min(n_examples, int(d.top.count[j]))
        examples = []
        for inst, v in zip(d.top.inst[j, :ne].tolist(), d.top.val[j, :ne].tolist()):
            h = d.hist[inst, :CARD_EXAMPLE_LEN]
            h = h[h > 0][::-1]  # chronological: oldest of the last <= 9 first
            examples.append({"history_titles": [str(x) for x in d.display[h]], "activation": float(v)})
        pp = d.popularity_pct[j]
        cards.append({
            "latent": int(j), "n_fire": int(d.stats.n_fire[j]), "freq": float(d.stats.freq[j]),
            "n_pool": int(t.n_top[j]), "top_items": top_items,
            "genre_enrichment": _enrich_entries(d, j, "genre", "genre"),
            "decade_enrichment": _enrich_entries(d, j, "decade", "decade"),
            "popularity_pct": float(pp) if np.isfinite(pp) else 50.0,
            "context": _context(d, j, its),
            "examples": examples,
        })
    return cards


def dictionary_tables(d: ConceptDictionary, labels=None, promoted: tuple[np.ndarray, np.ndarray] | None = None,
                      max_items: int | None = 200) -> dict[str, pd.DataFrame]:
    """The dictionaries as tidy DataFrames: 'latents', 'latent_items' (count, strength, lift, rank),
    'genre_enrichment', 'decade_enrichment', and 'promoted' when `promoted_items` output is given."""
    m = d.m
    lab = _label_array(labels, m)
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


# ----------------------------------------------------------------------------------------------------
# Offline labels and their signatures


def _significant(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e["p_value"] < ENRICH_ALPHA and e["odds_ratio"] >= ENRICH_MIN_OR]


def _langevin_inv(mu: float) -> float:
    """Inverse Langevin function (Cohen's approximation): the tilt theta of an exponential-family density
    exp(theta u) on [-1, 1] whose mean is mu."""
    mu = float(np.clip(mu, -0.95, 0.95))
    return mu * (3.0 - mu * mu) / (1.0 - mu * mu)


def _shrunk_lift(count: float, lift: float, prior: float = LIFT_PRIOR) -> float:
    """The ranking key of `item_tables` recovered from a card entry: lift = (count / N) / base, so the
    expected count N * base = count / lift and the shrunk lift is (count + a) / (count / lift + a)."""
    if not (count > 0 and lift > 0 and math.isfinite(lift)):
        return 0.0
    return (count + prior) / (count / lift + prior)


def label_exemplars(card: Mapping[str, Any], max_items: int | None = None) -> list[dict]:
    """The latent's exemplar items: its card's top items (already ranked by shrunk lift) that occur in at
    least EXEMPLAR_MIN_COUNT of its pooled training sequences with shrunk lift >= EXEMPLAR_MIN_LIFT, best
    first, at most `max_items`. Each: {'item_id', 'title' (None without titles), 'count', 'lift_shrunk'}."""
    out = []
    for it in card.get("top_items", []) or []:
        c, lf = float(it.get("count", 0) or 0), float(it.get("lift", 0) or 0)
        ls = _shrunk_lift(c, lf)
        if c >= EXEMPLAR_MIN_COUNT and ls >= EXEMPLAR_MIN_LIFT:
            out.append({"item_id": int(it["item_id"]), "title": it.get("title"), "count": int(c),
                        "lift_shrunk": ls})
    out.sort(key=lambda e: (-e["lift_shrunk"], -e["count"], e["item_id"]))  # stable w.r.t. the card's order
    return out[:LABEL_MAX_ITEMS if max_items is None else max_items]


def label_signature(card: Mapping[str, Any]) -> dict:
    """The metadata signature behind an offline label, i.e. exactly what the label states, as weights:
    - exemplar items (`label_exemplars`: up to LABEL_MAX_ITEMS of the card's top items by shrunk lift with
      count >= EXEMPLAR_MIN_COUNT and shrunk lift >= EXEMPLAR_MIN_LIFT), weight log(shrunk lift), the
      log-likelihood ratio of the item being in a sequence;
    - genres (categories): up to LABEL_MAX_GENRES significantly enriched ones (p < ENRICH_ALPHA, odds ratio
      >= ENRICH_MIN_OR, largest odds ratio first), weight log(odds ratio);
    - decades: up to LABEL_MAX_DECADES, chosen and weighted the same way;
    - popularity band from popularity_pct: 'popular' (>= POP_HIGH), 'niche' (<= POP_LOW), else 'mid'.
      For popular/niche the weight is theta = Langevin^-1((pct - 50) / 50), the log-likelihood slope of a
      tilted-uniform model of item popularity percentiles, so it sits on the same per-slot log-odds scale
      as the genre weights; 'mid' carries no weight (it does not separate anything).
    A sequence's score is sum_i weight_i * [item i in the sequence] + sum_f weight_f * share_f(sequence)
    + theta * (mean item percentile - 50) / 50 (`signature_scores`). Only the card (training data) is read."""
    g = _significant(card.get("genre_enrichment", []))
    g = sorted(g, key=lambda e: (-e["odds_ratio"], str(e["genre"])))[:LABEL_MAX_GENRES]
    dd = _significant(card.get("decade_enrichment", []))
    dd = sorted(dd, key=lambda e: (-e["odds_ratio"], int(e["decade"])))[:LABEL_MAX_DECADES]
    pct = float(card.get("popularity_pct", 50.0))
    band = "popular" if pct >= POP_HIGH else "niche" if pct <= POP_LOW else "mid"
    theta = _langevin_inv((pct - 50.0) / 50.0) if band != "mid" else 0.0
    return {"latent": int(card["latent"]),
            "items": {e["item_id"]: math.log(e["lift_shrunk"]) for e in label_exemplars(card)},
            "genres": {str(e["genre"]): math.log(e["odds_ratio"]) for e in g},
            "decades": {int(e["decade"]): math.log(e["odds_ratio"]) for e in dd},
            "popularity": {"band": band, "pct": pct, "weight": theta}}


def _is_titled(card: Mapping[str, Any]) -> bool:
    return any(it.get("title") for it in card.get("top_items", []))


def _short_title(e: Mapping[str, Any]) -> str:
    """'Tombstone (1993)' -> 'Tombstone', 'Princess Mononoke, The (Mononoke Hime) (1997)' -> 'The Princess
    Mononoke' (year and alternative title dropped, article moved to the front so names hold no stray
    commas); items without a title -> 'item <id>'."""
    t = e.get("title")
    if not t:
        return f"item {e['item_id']}"
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", str(t))
    t = re.sub(r"^(.+?)\s+\([^()]*\)$", r"\1", t)
    return re.sub(r"^(.+), (The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)$", r"\2 \1", t).replace("L' ", "L'")


def offline_label(card: Mapping[str, Any]) -> dict:
    """A deterministic label from metadata only (the default labeler when no LLM is configured), e.g.
    name "Western (Tombstone, Unforgiven, Dances with Wolves), 1990s releases, mid-popularity" with a
    description that states what the detection score uses (`label_signature`): the exemplar items and
    their lift, the enriched genres / decades with their odds ratios, and the popularity band."""
    sig = label_signature(card)
    titled = _is_titled(card)
    noun = "genre" if titled else "categor"
    ex = label_exemplars(card)
    gs = sorted(sig["genres"], key=lambda k: -sig["genres"][k])
    ds = sorted(sig["decades"], key=lambda k: -sig["decades"][k])
    band = sig["popularity"]["band"]
    pct = sig["popularity"]["pct"]
    band_txt = {"popular": "popular", "niche": "niche", "mid": "mid-popularity"}[band]
    head = " + ".join(gs) if gs else ("mixed genres" if noun == "genre" else "mixed categories")
    if ex:
        head += " (" + ", ".join(_short_title(e) for e in ex[:LABEL_NAME_ITEMS]) + ")"
    parts = [head]
    parts += [f"{d}s releases" for d in ds]
    parts.append(band_txt)
    name = ", ".join(parts)
    freq = float(card.get("freq", 0.0))
    if freq > GENERIC_FREQ:
        name = f"generic ({100 * freq:.0f}% of histories): " + name
    what = "titles" if titled else "items"
    if gs:
        ors = {e["genre"]: e["odds_ratio"] for e in card["genre_enrichment"]}
        kind = "genres" if noun == "genre" else "categories"
        g_txt = f"rich in {' and '.join(gs)} {what} ({kind} enriched, odds ratio " \
                + ", ".join(f"{ors[g]:.1f}" for g in gs) + ")"
    else:
        g_txt = f"with no significantly enriched {'genre' if noun == 'genre' else 'category'}"
    d_txt = ""
    if ds:
        ord_ = {e["decade"]: e["odds_ratio"] for e in card["decade_enrichment"]}
        d_txt = ", mostly " + " and ".join(f"{d}s releases (odds ratio {ord_[d]:.1f})" for d in ds)
    e_txt = ""
    if ex:
        e_txt = (" Typical " + ("titles" if titled else "items") + ": "
                 + "; ".join(f"{e['title'] or 'item ' + str(e['item_id'])} ({e['lift_shrunk']:.1f}x base rate)"
                             for e in ex) + ".")
    desc = (f"Fires on histories {g_txt}{d_txt}, of {band_txt.replace('-', ' ')} {what} "
            f"(popularity percentile {pct:.0f}, 50 = typical).{e_txt}")
    return {"name": name, "description": desc}


# ----------------------------------------------------------------------------------------------------
# Offline detection scoring (delphi style, no LLM)


def _activation_csr(idx: np.ndarray, val: np.ndarray, m: int) -> sp.csr_matrix:
    idx, val = np.asarray(idx), np.asarray(val, dtype=np.float64)
    n, k = idx.shape
    keep = val.ravel() > 0
    A = sp.csr_matrix((val.ravel()[keep], (np.repeat(np.arange(n), k)[keep], idx.ravel()[keep])), shape=(n, m))
    A.sum_duplicates()
    return A


def sequence_features(X: sp.csr_matrix, feats: ItemFeatures, item_pct: np.ndarray) -> np.ndarray:
    """(n, F + 1) float32: share of each sequence's items holding each feature, and last the centred
    popularity (mean item percentile - 50) / 50 in [-1, 1]."""
    nnz = np.maximum(np.diff(X.indptr), 1).astype(np.float64)
    share = np.asarray((X @ feats.M.astype(np.float32)).todense(), dtype=np.float64) / nnz[:, None]
    pop = (np.nan_to_num(sequence_popularity(X, item_pct), nan=50.0) - 50.0) / 50.0
    return np.column_stack([share, pop]).astype(np.float32)


def signature_matrix(signatures: Sequence[Mapping], feats: ItemFeatures, m: int) -> np.ndarray:
    """(F + 1, m) weights: column j scores sequences for latent j (zero column = no signature)."""
    col = {name: i for i, name in enumerate(feats.names)}
    W = np.zeros((len(feats.names) + 1, m), dtype=np.float32)
    for s in signatures:
        j = int(s["latent"])
        for g, w in s["genres"].items():
            if f"genre:{g}" in col:
                W[col[f"genre:{g}"], j] = w
        for dec, w in s["decades"].items():
            if f"decade:{int(dec)}" in col:
                W[col[f"decade:{int(dec)}"], j] = w
        W[-1, j] = s["popularity"]["weight"]
    return W


def item_signature_matrix(signatures: Sequence[Mapping], n_items: int, m: int) -> sp.csr_matrix:
    """(n_items, m) sparse weights of the signatures' exemplar items (column j = latent j); item ids may be
    str after a JSON round trip; ids outside [1, n_items) are ignored."""
    rows, cols, data = [], [], []
    for s in signatures:
        for i, w in (s.get("items") or {}).items():
            i = int(i)
            if 0 < i < n_items:
                rows.append(i)
                cols.append(int(s["latent"]))
                data.append(float(w))
    Wi = sp.csr_matrix((np.asarray(data, dtype=np.float64), (np.asarray(rows, dtype=np.int64),
                        np.asarray(cols, dtype=np.int64))), shape=(n_items, m))
    Wi.sum_duplicates()
    return Wi


def _item_term(X: sp.csr_matrix, Wi: sp.csr_matrix) -> np.ndarray:
    """(n, m') dense item part of the signature scores: sum of the exemplar weights present in each row
    (presence, not share: an exemplar counts the same in a long or a short history; on ML-1M dividing by
    the history length scored every model lower)."""
    return np.asarray((X.astype(np.float64) @ Wi).todense(), dtype=np.float64)


def _item_term_pairs(X: sp.csr_matrix, Wi_T: sp.csr_matrix) -> np.ndarray:
    """Row-wise item term of rows X[p] against signature rows Wi_T[p] (both (P, n_items))."""
    return np.asarray(X.astype(np.float64).multiply(Wi_T).sum(1)).ravel()


def signature_scores(X: sp.csr_matrix, feats: ItemFeatures, item_pct: np.ndarray, W: np.ndarray,
                     Wi: sp.csr_matrix) -> np.ndarray:
    """(n, m) scores of sequences (incidence X) against signatures: exemplar-item term + feature term."""
    return sequence_features(X, feats, item_pct).astype(np.float64) @ W.astype(np.float64) + _item_term(X, Wi)


def _best_thresholds(s: np.ndarray, pos: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the threshold t (predict positive iff score >= t) maximising balanced accuracy over the
    valid entries (cuts only between distinct scores), and that balanced accuracy. Rows without both
    classes, or where no cut beats 0.5, get t = +inf (predict nothing) and balanced accuracy 0.5."""
    m, c = s.shape
    key = np.where(valid, -s.astype(np.float64), np.inf)
    o = np.argsort(key, axis=1, kind="stable")
    ss = -np.take_along_axis(key, o, 1)            # descending scores, invalid = -inf at the end
    pp = np.take_along_axis(pos & valid, o, 1)
    vv = np.take_along_axis(valid, o, 1)
    P = pp.sum(1, keepdims=True).astype(np.float64)
    N = (vv & ~pp).sum(1, keepdims=True).astype(np.float64)
    tp = np.cumsum(pp, 1)
    fp = np.cumsum(vv & ~pp, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ba = 0.5 * (tp / P + (N - fp) / N)
    nxt = np.concatenate([ss[:, 1:], np.full((m, 1), -np.inf)], 1)
    cut = vv & (nxt != ss)                         # end of a tie group
    ba = np.where(cut, ba, -np.inf)
    best = np.argmax(ba, 1)
    r = np.arange(m)
    thr = np.where(np.isfinite(nxt[r, best]), 0.5 * (ss[r, best] + nxt[r, best]), -np.inf)
    bad = (P[:, 0] == 0) | (N[:, 0] == 0) | ~np.isfinite(ba[r, best]) | (ba[r, best] <= 0.5)
    return np.where(bad, np.inf, thr), np.where(bad, 0.5, ba[r, best])


def _tie_groups(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each column of S (n, c): its ascending order and, per sorted position, the first and last position
    of its tie group, as (c, n) arrays (one row per column, so sorts and gathers run over contiguous memory,
    several times faster than along axis 0). Computed once per score block for any number of weightings."""
    St = np.ascontiguousarray(S.T)
    n = St.shape[1]
    o = np.argsort(St, axis=1, kind="stable")
    Ss = np.take_along_axis(St, o, 1)
    cols = np.arange(n)[None, :]
    new = np.ones_like(Ss, dtype=bool)
    new[:, 1:] = Ss[:, 1:] != Ss[:, :-1]
    last = np.ones_like(Ss, dtype=bool)
    last[:, :-1] = new[:, 1:]
    gs = np.maximum.accumulate(np.where(new, cols, 0), 1)
    ge = np.minimum.accumulate(np.where(last, cols, n - 1)[:, ::-1], 1)[:, ::-1]
    return o, gs, ge


def _weighted_auc_ba(S: np.ndarray, wp: np.ndarray, wn: np.ndarray, thr: np.ndarray,
                     groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise ROC-AUC (ties count 1/2) and balanced accuracy at `thr` of positives weighted wp
    against negatives weighted wn, all (n, c) arrays; `groups` = `_tie_groups(S)` (computed if not given)."""
    o, gs, ge = _tie_groups(S) if groups is None else groups
    wpt, wnt = np.ascontiguousarray(wp.T), np.ascontiguousarray(wn.T)
    wps, wns = np.take_along_axis(wpt, o, 1), np.take_along_axis(wnt, o, 1)
    cw = np.cumsum(wns, 1)
    below = np.take_along_axis(cw - wns, gs, 1)
    tie = np.take_along_axis(cw, ge, 1) - below
    Wp, Wn = wpt.sum(1), wnt.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (wps * (below + 0.5 * tie)).sum(1) / (Wp * Wn)
        pred = S >= thr[None, :]
        ba = 0.5 * ((wp * pred).sum(0) / Wp + (wn * ~pred).sum(0) / Wn)
    bad = (Wp <= 0) | (Wn <= 0)
    auc[bad], ba[bad] = np.nan, np.nan
    return auc, ba


def strong_thresholds(f: Firing, q: float) -> np.ndarray:
    """(m,) per-latent activation thresholds: the q-quantile (lower end) of each latent's own positive
    TRAINING activations, so q = 0.5 keeps the upper half of every latent's firings whatever its scale;
    q = 0 gives 0 (any activation counts). Latents that never fire get +inf."""
    cnt = f.counts
    if q <= 0:
        return np.zeros(len(cnt))
    at = f.ptr[:-1] + np.floor((1 - q) * np.maximum(cnt - 1, 0)).astype(np.int64)  # values sorted descending
    return np.where(cnt > 0, f.val[np.minimum(at, max(len(f.val) - 1, 0))] if f.val.size else np.inf, np.inf)


def detection_scores(d: ConceptDictionary, signatures: Sequence[Mapping] | None, heldout_idx: np.ndarray,
                     heldout_val: np.ndarray, heldout_hist: np.ndarray, seed: int = 0,
                     pop_bins: int = POP_BINS, block: int = 256, strong_q: float = 0.0) -> pd.DataFrame:
    """Delphi-style detection without an LLM: can a latent's label signature tell its activating held-out
    sequences (activation > 0) from non-activating ones?

    Scores: every held-out sequence against every signature in two products (genre/decade/popularity
    features @ W, plus item incidence @ Wi for the exemplar items; see `label_signature`). The threshold
    per latent is picked on TRAINING sequences (up to CALIB_POS activating ones spread over its activation
    range vs the non-activating ones of a seeded pool of CALIB_NEG) to maximise balanced accuracy.
    Negatives, reported separately: (a) random = all non-activating held-out sequences (the expectation
    of random draws, without their noise); (b) popularity-matched = the same, reweighted so their
    distribution over popularity quantile bins (mean item popularity, bin edges from training sequences)
    equals the positives' (the expectation of matched draws); positives in a bin with no negative are
    dropped from (b). `signatures` are cards or `label_signature` dicts; None = this dictionary's cards.

    strong_q > 0 asks the question only of each latent's strong firings: positives are held-out activations
    at or above the latent's own training q-quantile (`strong_thresholds`; the threshold calibration uses the
    same strong training firings), negatives stay the non-activating sequences, and weaker activations are
    on neither side. The reference judges labels on each latent's top activations only (protocol.md §4.1:
    decile level >= 5, top 10 by strength); q = 0.5 is the closest whole-population analogue."""
    m = d.m
    if signatures is None:
        signatures = latent_cards(d, n_examples=0)
    sigs = [s if "popularity" in s and isinstance(s["popularity"], Mapping) else label_signature(s)
            for s in signatures]
    W = signature_matrix(sigs, d.feats, m)
    Wi = item_signature_matrix(sigs, d.n_items, m)
    has_sig = np.zeros(m, bool)
    has_sig[[int(s["latent"]) for s in sigs]] = True
    # --- threshold on training sequences
    rng = np.random.default_rng(seed)
    n_tr = d.X.shape[0]
    pool = np.sort(rng.choice(n_tr, size=min(CALIB_NEG, n_tr), replace=False))
    f = d.firing
    t_pos = strong_thresholds(f, strong_q)
    lat_e = f.latent_of_entries()
    cnt = np.bincount(lat_e[f.val >= t_pos[lat_e]], minlength=m)       # = f.counts when strong_q = 0
    cp = np.minimum(cnt, CALIB_POS)
    lat = np.repeat(np.arange(m), cp)
    k = np.arange(cp.sum()) - np.repeat(np.cumsum(cp) - cp, cp)
    off = np.floor((k + 0.5) * cnt[lat] / np.maximum(cp[lat], 1)).astype(np.int64)  # evenly over the ranks
    pos_inst = f.inst[f.ptr[:-1][lat] + off]
    need = np.unique(np.concatenate([pool, pos_inst]))
    Xn = d.X[need]
    Ftr = sequence_features(Xn, d.feats, d.item_pct).astype(np.float64)
    loc = np.searchsorted(need, pos_inst)
    ploc = np.searchsorted(need, pool)
    s_pos = np.full((m, CALIB_POS), np.nan, dtype=np.float64)
    s_pos[lat, k] = np.einsum("pf,fp->p", Ftr[loc], W[:, lat].astype(np.float64)) \
        + _item_term_pairs(Xn[loc], Wi.T.tocsr()[lat])
    s_neg = (Ftr[ploc] @ W.astype(np.float64) + _item_term(Xn[ploc], Wi)).T    # (m, |pool|)
    A_pool = _fires_on(f, pool, m)                                   # (m, |pool|) bool
    s_all = np.concatenate([np.nan_to_num(s_pos), s_neg], 1)
    is_pos = np.concatenate([np.ones((m, CALIB_POS), bool), np.zeros_like(s_neg, bool)], 1)
    valid = np.concatenate([~np.isnan(s_pos), ~A_pool], 1)
    thr, ba_train = _best_thresholds(s_all, is_pos, valid)
    # --- held-out scores
    hist_h = np.asarray(heldout_hist)
    Xh = incidence(hist_h, d.n_items)
    Fh = sequence_features(Xh, d.feats, d.item_pct).astype(np.float64)
    W64 = W.astype(np.float64)
    Ah = _activation_csr(heldout_idx, heldout_val, m).tocsc()
    edges = np.nanquantile(d.seq_pop, np.linspace(0, 1, pop_bins + 1)[1:-1]) if pop_bins > 1 else np.zeros(0)
    bins = np.searchsorted(edges, np.nan_to_num(sequence_popularity(Xh, d.popularity)), side="right")
    onehot = np.eye(max(pop_bins, 1))[bins]                                     # (n_h, B)
    rows = []
    for j0 in range(0, m, block):
        j1 = min(m, j0 + block)
        S = Fh @ W64[:, j0:j1] + _item_term(Xh, Wi[:, j0:j1])
        Aj = Ah[:, j0:j1].toarray()
        P = (Aj >= t_pos[None, j0:j1]) & (Aj > 0)
        Nn = Aj <= 0                                   # weak activations (0 < a < t_pos) are on neither side
        wp = P.astype(np.float64)
        wn = Nn.astype(np.float64)
        groups = _tie_groups(S)                      # one sort serves both negative sets
        auc_r, ba_r = _weighted_auc_ba(S, wp, wn, thr[j0:j1], groups)
        pb, nb = P.T.astype(np.float64) @ onehot, Nn.T.astype(np.float64) @ onehot   # (c, B)
        npos, nneg = pb.sum(1, keepdims=True), nb.sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            wbin = np.where(nb > 0, (pb / npos) / (nb / nneg), 0.0)
        wbin = np.nan_to_num(wbin)
        wn_m = wn * wbin.T[bins]                                                 # (n_h, c)
        wp_m = wp * (nb > 0).T[bins]
        auc_m, ba_m = _weighted_auc_ba(S, wp_m, wn_m, thr[j0:j1], groups)
        rows.append(pd.DataFrame({
            "latent": np.arange(j0, j1), "has_signature": has_sig[j0:j1] & ((np.abs(W[:, j0:j1]).sum(0) > 0)
                                                              | (np.diff(Wi[:, j0:j1].tocsc().indptr) > 0)),
            "threshold": thr[j0:j1], "bal_acc_train": ba_train[j0:j1], "n_pos": P.sum(0), "n_neg": Nn.sum(0),
            "bal_acc_random": ba_r, "auc_random": auc_r,
            "n_pos_matched": wp_m.sum(0).astype(np.int64), "n_neg_matched": (wn_m > 0).sum(0),
            "bal_acc_matched": ba_m, "auc_matched": auc_m}))
    return pd.concat(rows, ignore_index=True)


def _fires_on(f: Firing, rows: np.ndarray, m: int) -> np.ndarray:
    """(m, len(rows)) bool: does latent j fire on training instance rows[r]? (rows sorted)."""
    mark = np.zeros(f.n, bool)
    mark[rows] = True
    hit = mark[f.inst]
    lat = f.latent_of_entries()[hit]
    out = np.zeros((m, len(rows)), bool)
    out[lat, np.searchsorted(rows, f.inst[hit])] = True
    return out


def dense_to_sparse(h: np.ndarray, k: int, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                    both_signs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Raw-dimension baseline in the SAE's (idx, val) format.

    Each dimension is standardised (z = (h - mean) / std; pass the TRAINING mean/std when converting
    held-out vectors), then each instance keeps its k largest z as (index, value), with values <= 0
    set to 0 (= not active). Standardising first matters: raw dimensions differ in offset and scale, and
    without it a dimension with a large mean would "fire" on everyone. With both_signs=True the negative
    side of dimension i is a separate unit i + d (m = 2d), since a raw direction has two ends."""
    h = np.asarray(h, dtype=np.float64)
    mu = h.mean(0) if mean is None else np.asarray(mean, dtype=np.float64)
    sd = h.std(0) if std is None else np.asarray(std, dtype=np.float64)
    z = (h - mu) / np.where(sd > 0, sd, 1.0)
    if both_signs:
        z = np.concatenate([z, -z], 1)
    k = min(k, z.shape[1])
    part = np.argpartition(-z, k - 1, axis=1)[:, :k]
    pv = np.take_along_axis(z, part, 1)
    o = np.lexsort((part, -pv), axis=1)
    idx = np.take_along_axis(part, o, 1)
    val = np.maximum(np.take_along_axis(pv, o, 1), 0.0)
    return idx.astype(np.int64), val.astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Explanations of recommendations


def explain_recommendations(z_idx: np.ndarray, z_val: np.ndarray, W_dec: np.ndarray, b_dec: np.ndarray,
                            E: np.ndarray, items: pd.DataFrame | None = None, top: int = 10, labels=None,
                            mask: np.ndarray | None = None, instances: np.ndarray | None = None) -> pd.DataFrame:
    """Split each recommended item's reconstructed score x_hat . E_i into latent contributions
    z_j (W_dec[j] . E_i) plus the bias term b_dec . E_i; they add up exactly (float64) to the score.

    z_idx/z_val: (k,) for one instance or (B, k). Items ranked by x_hat . E_i, padding (column 0) and
    `mask` (B, n_items) True entries excluded. Returns DataFrame(instance, rank, item_id, title, score,
    latent, contribution, label): one row per active latent (largest contribution first) and one bias
    row (latent -1) per recommended item."""
    zi, zv = np.atleast_2d(z_idx), np.atleast_2d(z_val).astype(np.float64)
    W = np.asarray(W_dec, dtype=np.float64)
    b = np.asarray(b_dec, dtype=np.float64)
    Em = np.asarray(E, dtype=np.float64)
    B, k = zi.shape
    m, n_items = W.shape[0], Em.shape[0]
    xhat = np.einsum("bk,bkd->bd", zv, W[zi]) + b
    scores = xhat @ Em.T
    scores[:, 0] = -np.inf
    if mask is not None:
        scores = np.where(np.atleast_2d(mask), -np.inf, scores)
    top = min(top, n_items - 1)
    part = np.argpartition(-scores, top - 1, axis=1)[:, :top]
    ps = np.take_along_axis(scores, part, 1)
    o = np.lexsort((part, -ps), axis=1)
    rec = np.take_along_axis(part, o, 1)                                 # (B, top)
    rec_score = np.take_along_axis(ps, o, 1)
    contrib = zv[:, None, :] * np.einsum("bkd,btd->btk", W[zi], Em[rec])  # (B, top, k)
    bias = Em[rec] @ b                                                   # (B, top)
    lab = np.append(_label_array(labels, m), "bias (b_dec)")
    title = np.array([f"item {i}" for i in range(n_items)], dtype=object)
    if items is not None and "title" in items.columns:
        ids = items["item_id"].to_numpy()
        ok = ids < n_items
        t = items["title"].to_numpy(dtype=object)[ok]
        title[ids[ok]] = np.where(pd.isna(t), title[ids[ok]], t)
    inst_ids = np.arange(B) if instances is None else np.asarray(instances)
    bb, tt, kk = np.meshgrid(np.arange(B), np.arange(top), np.arange(k + 1), indexing="ij")
    lat_all = np.concatenate([zi[:, None, :].repeat(top, 1), np.full((B, top, 1), -1)], 2)
    con_all = np.concatenate([contrib, bias[..., None]], 2)
    active = np.concatenate([(zv > 0)[:, None, :].repeat(top, 1), np.ones((B, top, 1), bool)], 2)
    sel = active.ravel()
    bb, tt, lat, con = bb.ravel()[sel], tt.ravel()[sel], lat_all.ravel()[sel], con_all.ravel()[sel]
    is_bias = lat < 0
    order = np.lexsort((lat, -con, is_bias, tt, bb))  # bias row last
    bb, tt, lat, con, is_bias = bb[order], tt[order], lat[order], con[order], is_bias[order]
    item = rec[bb, tt]
    return pd.DataFrame({"instance": inst_ids[bb], "rank": tt + 1, "item_id": item, "title": title[item],
                         "score": rec_score[bb, tt], "latent": lat, "contribution": con,
                         "label": lab[np.where(is_bias, m, lat)]})


def render_explanations(df: pd.DataFrame, n_reasons: int = 3) -> list[str]:
    """One line per recommended item: 'recommended Gladiator (2000) because of: action epics (+0.81), ...'
    (the n_reasons largest latent contributions; the bias row is not a reason)."""
    keys = ["instance", "rank"]
    heads = df[["instance", "rank", "title"]].drop_duplicates(keys).sort_values(keys)
    lat = df[df["latent"] >= 0].sort_values(keys + ["contribution"], ascending=[True, True, False])
    lat = lat.groupby(keys, sort=False).head(n_reasons)
    reasons = lat.assign(txt=[f"{lb} ({c:+.2f})" for lb, c in zip(lat["label"], lat["contribution"])]) \
        .groupby(keys)["txt"].agg(", ".join)
    out = []
    for inst, rank, title in heads.itertuples(index=False):
        r = reasons.get((inst, rank), "")
        out.append(f"recommended {title} because of: {r or 'the bias term only'}")
    return out


# ----------------------------------------------------------------------------------------------------
# The notebook stage (05): dictionaries, labels, scores and baselines for one run


def raw_dimension_k(d_in: int, k: int, m: int) -> int:
    """k for the raw-dimension baseline: the SAE's firing rate (k / m) applied to 2 * d_in signed units."""
    return max(1, round(2 * d_in * k / m))


def score_summary(scores: pd.DataFrame, live: np.ndarray | None = None, threshold: float = 0.8,
                  min_pos: int = MIN_POS_SUMMARY) -> dict:
    """Headline numbers of a detection-score table: share of (live) latents with balanced accuracy >=
    threshold against random and popularity-matched negatives, medians and mean ROC-AUC.

    A latent counts only with at least `min_pos` held-out positives (activating = the latent is among the
    instance's top-k with value > 0): with 1-4 positives its balanced accuracy is 0.5 +- 0.25 by chance
    alone. The rule is the same for every model (SAE and baselines); `n_scored` says how many counted."""
    s = scores if live is None else scores[scores["latent"].isin(np.flatnonzero(live))]
    s = s[s["n_pos"] >= max(int(min_pos), 1)]
    out = {"n_scored": int(len(s))}
    for neg in ("random", "matched"):
        ba, auc = s[f"bal_acc_{neg}"].astype(float), s[f"auc_{neg}"].astype(float)
        out[f"share_bal_acc_ge_{threshold}_{neg}"] = float((ba >= threshold).mean()) if len(s) else float("nan")
        out[f"median_bal_acc_{neg}"] = float(ba.median()) if len(s) else float("nan")
        out[f"mean_auc_{neg}"] = float(auc.mean()) if len(s) else float("nan")
    return out


def dictionary_and_scores(idx_train, val_train, hist_train, idx_held, val_held, hist_held, items: pd.DataFrame,
                          m: int, top_n: int, seed: int = 0,
                          item_pool: int = ITEM_POOL) -> tuple[ConceptDictionary, list[dict], pd.DataFrame]:
    """Build a dictionary on training instances, its cards, and its offline detection scores on held-out
    instances: the same call serves the SAE and both baselines."""
    d = build_dictionaries(idx_train, val_train, hist_train, items, m, top_n=top_n, item_pool=item_pool)
    cards = latent_cards(d)
    scores = detection_scores(d, cards, idx_held, val_held, hist_held, seed=seed)
    return d, cards, scores


@dataclass
class ConceptRun:
    d: ConceptDictionary
    cards: list[dict]
    labels: pd.DataFrame        # latent, name, description, labeler, status, ...
    scores: pd.DataFrame        # offline detection scores of the SAE's labels
    baselines: dict             # name -> (ConceptDictionary, scores) for 'raw' and 'random'
    tables: dict[str, pd.DataFrame]
    judge: pd.DataFrame | None
    seconds: dict
    others: dict = field(default_factory=dict)  # display name -> (ConceptDictionary, scores): a second SAE size


def _split_arrays(ctx, acts: dict, splits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.concatenate([acts[s][0] for s in splits])
    val = np.concatenate([acts[s][1] for s in splits])
    hist = np.concatenate([ctx.inst[s].hist for s in splits])
    return idx, val, hist


def concept_stage(cfg, ctx, sae_model, acts: dict, progress: bool = True, alt_sae=None) -> ConceptRun:
    """Dictionaries from training instances, labels (offline metadata labeler or an LLM), offline
    detection scores on held-out (dev + test) instances, and the same scores for the 64 raw dimensions
    of h_u and for a randomly initialised SAE of the same shape. With `alt_sae` (the other fitted size,
    1,024 latents with k = 8 by default) its detection scores and its own two baselines (raw dimensions
    at its firing rate, a random SAE of its shape) are added to the comparison at every window.
    The window sweep scores every window on all firings and on each latent's upper half (STRONG_Q), and
    each latent at the window it reads best (chosen on training data; `best_window_scores`): the SAE's
    per-latent table is tables['scores_best_window'] and its window the latents table's 'reads_window'."""
    import time

    import torch

    from . import labeling, sae as sae_mod

    t = {}
    t0 = time.time()
    m = sae_model.cfg.n_latents
    held = ("dev", "test")
    it, vt, ht = acts["train"][0], acts["train"][1], ctx.inst["train"].hist
    ih, vh, hh = _split_arrays(ctx, acts, held)
    d, cards, scores = dictionary_and_scores(it, vt, ht, ih, vh, hh, ctx.ds.items, m, cfg.top_n, cfg.seed,
                                             cfg.item_pool)
    t["dictionaries_and_scores"] = time.time() - t0
    t0 = time.time()
    domain = "movies" if "title" in ctx.ds.items.columns else "grocery products (category ids only)"
    llm = labeling.LLMConfig(model=cfg.llm_model, budget_tokens=cfg.llm_budget_tokens, seed=cfg.seed,
                             cache_dir=str(Path(cfg.run_dir) / "labels" / "llm_cache"))  # labels + judge: one budget
    labels = labeling.label_latents(cards, llm, Path(cfg.run_dir) / "labels" / cfg.labeler, labeler=cfg.labeler,
                                    domain=domain, progress=progress)
    t["labels"] = time.time() - t0
    judge = None
    if cfg.labeler == "openai" and os.environ.get("OPENAI_API_KEY"):
        t0 = time.time()
        judge = labeling.judge_latents(labels, judge_probes(d, acts, ctx, cfg.seed), llm,
                                       Path(cfg.run_dir) / "labels" / "judge", domain=domain, progress=progress)
        t["judge"] = time.time() - t0
    t0 = time.time()
    names = dict(zip(labels["latent"].astype(int), labels["name"].fillna("").astype(str)))
    W_dec = sae_model.W_dec.detach().numpy()
    E = ctx.model.item_emb.weight.detach().numpy()
    tables = dictionary_tables(d, names, promoted_items(W_dec, E))
    tables["labels"] = labels
    tables["scores"] = scores
    h_train, h_held = ctx.h["train"], torch.cat([ctx.h[s] for s in held])
    base = _baseline_arrays(sae_model, h_train, h_held)
    raw, rnd = (dictionary_and_scores(a, b, ht, c, e, hh, ctx.ds.items, mm, cfg.top_n, cfg.seed, cfg.item_pool)
                for a, b, c, e, mm in (base["raw"], base["random"]))
    t["baselines"] = time.time() - t0
    t0 = time.time()
    models = {"SAE": (it, vt, ih, vh, m), "raw h_u dimensions": base["raw"], "random SAE": base["random"]}
    kept: dict = {}
    tables["detection_by_window"] = window_sweep(models, ht, hh, ctx.ds.items, cfg.top_n, cfg.seed, WINDOWS,
                                                 full={"SAE": (d, scores), "raw h_u dimensions": (raw[0], raw[2]),
                                                       "random SAE": (rnd[0], rnd[2])},
                                                 strengths=(0.0, STRONG_Q), per_latent=True, keep=kept,
                                                 item_pool=cfg.item_pool).assign(sae=f"{m} latents, k={sae_model.cfg.k}")
    best = kept[("SAE", 0.0)]
    tables["scores_best_window"] = best
    tables["latents"]["reads_window"] = best.set_index("latent")["window"].reindex(np.arange(m)).to_numpy()
    t["window_sweep"] = time.time() - t0
    others = {}
    if alt_sae is not None:
        t0 = time.time()
        ma, ka = alt_sae.cfg.n_latents, alt_sae.cfg.k
        tag = f"({ma} latents, k={ka})"
        base2 = _baseline_arrays(alt_sae, h_train, h_held)
        models2 = {f"SAE {tag}": (*sae_mod.encode_sparse(alt_sae, h_train), *sae_mod.encode_sparse(alt_sae, h_held), ma),
                   f"raw h_u dimensions (k={raw_dimension_k(h_train.shape[1], ka, ma)})": base2["raw"],
                   f"random SAE {tag}": base2["random"]}
        for name, (a, b, c, e, mm) in models2.items():
            dd, _, sc = dictionary_and_scores(a, b, ht, c, e, hh, ctx.ds.items, mm, cfg.top_n, cfg.seed,
                                              cfg.item_pool)
            others[name] = (dd, sc)
        sweep2 = window_sweep(models2, ht, hh, ctx.ds.items, cfg.top_n, cfg.seed, WINDOWS, full=others,
                              strengths=(0.0, STRONG_Q), per_latent=True, item_pool=cfg.item_pool).assign(sae=f"{ma} latents, k={ka}")
        tables["detection_by_window"] = pd.concat([tables["detection_by_window"], sweep2], ignore_index=True)
        t["other_size"] = time.time() - t0
    return ConceptRun(d, cards, labels, scores, {"raw": (raw[0], raw[2]), "random": (rnd[0], rnd[2])}, tables,
                      judge, t, others)


def _baseline_arrays(sae_model, h_train, h_held) -> dict[str, tuple]:
    """The two baselines of an SAE as (idx_train, val_train, idx_held, val_held, m): 'raw' = the signed raw
    h_u dimensions (standardised with the training mean/std) firing at the SAE's rate, 'random' = a randomly
    initialised SAE of the same shape (b_dec = training mean)."""
    from . import sae as sae_mod

    x_tr, x_h = h_train.numpy(), h_held.numpy()
    kr = raw_dimension_k(x_tr.shape[1], sae_model.cfg.k, sae_model.cfg.n_latents)
    mu, sd = x_tr.mean(0), x_tr.std(0)
    rnd = sae_mod.random_sae(sae_model.cfg, x_mean=h_train.mean(0))
    return {"raw": (*dense_to_sparse(x_tr, kr, both_signs=True), *dense_to_sparse(x_h, kr, mu, sd, both_signs=True),
                    2 * x_tr.shape[1]),
            "random": (*sae_mod.encode_sparse(rnd, h_train), *sae_mod.encode_sparse(rnd, h_held),
                       sae_model.cfg.n_latents)}


def best_window_scores(per_window: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Each latent's detection scores at the window it reads best, chosen on TRAINING data only: the window
    whose threshold calibration (training sequences) reached the highest balanced accuracy (`bal_acc_train`;
    ties go to the longer window). A label that says "the last movie is a Western" and one that says "the
    history is rich in Westerns" are different claims; this lets each latent make the one its training
    firings support, the same rule for every model, and the held-out columns stay untouched by the choice.
    per_window: window -> `detection_scores` table. Returns one row per latent with a 'window' column."""
    frames = [sc.assign(window=int(w)) for w, sc in per_window.items()]
    if not frames:
        raise ValueError("best_window_scores needs at least one window")
    allw = pd.concat(frames, ignore_index=True)
    if "bal_acc_train" not in allw.columns:
        raise ValueError("score tables lack 'bal_acc_train' (made by an older detection_scores)")
    key = allw["bal_acc_train"].fillna(-np.inf)
    order = np.lexsort((-allw["window"].to_numpy(), -key.to_numpy(), allw["latent"].to_numpy()))
    best = allw.iloc[order].drop_duplicates("latent", keep="first")
    return best.sort_values("latent").reset_index(drop=True)


def window_sweep(models: Mapping[str, tuple], hist_train: np.ndarray, hist_held: np.ndarray, items: pd.DataFrame,
                 top_n: int, seed: int, windows: Sequence[int] = WINDOWS,
                 full: Mapping[str, tuple] | None = None, strengths: Sequence[float] = (0.0,),
                 strong_windows: Sequence[int] | None = None, per_latent: bool = False,
                 keep: dict | None = None, item_pool: int = ITEM_POOL) -> pd.DataFrame:
    """Offline detection when a "sequence" is only the w most recent history items (dictionaries, labels
    and held-out scoring all rebuilt on that window), for every model: which part of the history does a
    latent read? And, per `strengths` q, on which of its firings: q = 0 scores every activation, q > 0 only
    each latent's strong ones (`detection_scores(strong_q=q)`), at every window or, with `strong_windows`,
    only at those and the whole history (each q > 0 costs one more scoring pass per window and model). One
    row per (window, strong_q, model) with `score_summary`'s columns; window = history length for the whole
    history. With `per_latent`, one more row per (strong_q, model) with window = 0: each latent scored at the
    window it reads best (`best_window_scores`, chosen on training data), for every q scored at all windows;
    `keep` (a dict) then receives (model, q) -> that per-latent table. models: name -> (idx_train,
    val_train, idx_held, val_held, m); `full` reuses (dictionary, scores at q = 0) of the whole history."""
    rows = []
    L = hist_train.shape[1]
    strong_at = None if strong_windows is None else {min(int(w), L) for w in strong_windows} | {L}
    ws = sorted({min(int(w), L) for w in windows} | {L})
    tables: dict[tuple, dict[int, pd.DataFrame]] = {}
    lives: dict[str, np.ndarray] = {}
    for w in ws:
        for name, (a, b, c, e, m) in models.items():
            if w == L and full and name in full:
                d, sc0 = full[name]
                cards = None
            else:
                d, cards, sc0 = dictionary_and_scores(a, b, hist_train[:, :w], c, e, hist_held[:, :w], items, m,
                                                      top_n, seed, item_pool)
            lives[name] = d.stats.n_fire > 0
            for q in strengths:
                if q > 0 and strong_at is not None and w not in strong_at:
                    continue
                sc = sc0 if q <= 0 else detection_scores(d, cards, c, e, hist_held[:, :w], seed=seed, strong_q=q)
                tables.setdefault((name, float(q)), {})[w] = sc
                rows.append({"window": w, "strong_q": float(q), "model": name, **score_summary(sc, lives[name])})
    if per_latent:
        for (name, q), per in tables.items():
            if set(per) != set(ws):
                continue
            best = best_window_scores(per)
            if keep is not None:
                keep[(name, q)] = best
            rows.append({"window": 0, "strong_q": q, "model": name, **score_summary(best, lives[name])})
    return pd.DataFrame(rows)


def judge_probes(d: ConceptDictionary, acts: dict, ctx, seed: int = 0, n_pos: int = 5, n_neg: int = 5,
                 max_titles: int = 9) -> list[dict]:
    """RecSAE simulation probes on held-out (test) instances: each live latent's top activating test
    instances and random non-activating ones; the 'last item' is SASRec's top-1 recommendation."""
    import torch

    from .metrics import mask_known

    idx, val = acts["test"]
    inst = ctx.inst["test"]
    scores = mask_known(ctx.h["test"] @ ctx.model.item_emb.weight.detach().T, inst.user, *ctx.mask)
    top1 = scores.argmax(1).numpy()
    rng = np.random.default_rng(seed)
    fires = _activation_csr(idx, val, d.m).T.tocsr()  # (m, n)
    probes = []
    for j in d.live.tolist():
        a, b = fires.indptr[j], fires.indptr[j + 1]
        rows, v = fires.indices[a:b], fires.data[a:b]
        pos = rows[np.argsort(-v, kind="stable")[:n_pos]]
        pool = np.setdiff1d(np.arange(len(inst)), rows)
        neg = rng.choice(pool, size=min(n_neg, len(pool)), replace=False) if len(pool) else np.array([], int)
        for r, is_pos in [(r, True) for r in pos] + [(r, False) for r in neg]:
            hh = inst.hist[r, :max_titles]
            hh = hh[hh > 0][::-1]
            probes.append({"latent": j, "history_titles": [str(x) for x in d.display[hh]],
                           "last_item": str(d.display[top1[r]]), "activating": bool(is_pos)})
    return probes


# ----------------------------------------------------------------------------------------------------
# Views for the notebook and the report (small DataFrames; the logic stays testable here)


def _titles(d: ConceptDictionary, ids) -> list[str]:
    return [str(d.display[i]) for i in ids]


def latent_overview(run: ConceptRun, n_titles: int = 5) -> pd.DataFrame:
    """One row per live latent: label, labeler, frequency, flags, detection AUC, top titles by lift."""
    t = run.d.tables
    lab = run.labels.set_index("latent")
    sc = run.scores.set_index("latent")
    rows = []
    for j in run.d.live.tolist():
        its = t.item[t.ptr[j]:min(t.ptr[j + 1], t.ptr[j] + n_titles)]
        rows.append({"latent": j, "label": lab.at[j, "name"] if j in lab.index else "",
                     "labeler": lab.at[j, "labeler"] if j in lab.index else "",
                     "freq": float(run.d.stats.freq[j]), "generic": bool(run.d.generic[j]),
                     "popularity": bool(run.d.popularity_flag[j]),
                     "auc_random": float(sc.at[j, "auc_random"]) if j in sc.index else float("nan"),
                     "bal_acc_random": float(sc.at[j, "bal_acc_random"]) if j in sc.index else float("nan"),
                     "top_movies": "; ".join(_titles(run.d, its))})
    return pd.DataFrame(rows).sort_values("freq", ascending=False).reset_index(drop=True)


def pick_example_latents(run: ConceptRun, n: int = 10, min_pos: int = 20) -> list[int]:
    """The most predictable non-generic latents (highest held-out ROC-AUC with enough positives)."""
    s = run.scores[(run.scores["n_pos"] >= min_pos)].copy()
    s = s[~run.d.generic[s["latent"].to_numpy()]]
    if s.empty:
        s = run.scores[run.scores["n_pos"] > 0]
    if s.empty:
        return run.d.live[:n].tolist()
    return s.sort_values(["auc_random", "latent"], ascending=[False, True])["latent"].head(n).astype(int).tolist()


def latent_view(run: ConceptRun, j: int, top: int = 10) -> dict[str, pd.DataFrame]:
    """A latent's card as tables: label, top movies by count / strength / lift, enrichment, promoted."""
    t = run.d.tables
    a, b = t.ptr[j], t.ptr[j + 1]
    df = pd.DataFrame({"item_id": t.item[a:b], "title": _titles(run.d, t.item[a:b]), "count": t.count[a:b],
                       "strength": t.strength[a:b].round(2), "lift": t.lift[a:b].round(2)})
    lab = run.labels[run.labels["latent"] == j]
    out = {"label": lab[["latent", "name", "description", "labeler"]].reset_index(drop=True),
           "by_count": df.sort_values(["count", "strength"], ascending=False).head(top).reset_index(drop=True),
           "by_strength": df.sort_values("strength", ascending=False).head(top).reset_index(drop=True),
           "by_lift": df.head(top).reset_index(drop=True)}
    for kind in ("genre", "decade"):
        e = run.tables[f"{kind}_enrichment"]
        out[f"{kind}_enrichment"] = (e[e["latent"] == j].sort_values("odds_ratio", ascending=False).head(top)
                                     .reset_index(drop=True))
    if "promoted" in run.tables:
        p = run.tables["promoted"]
        p = p[p["latent"] == j].copy()
        p["title"] = _titles(run.d, p["item_id"])
        out["promoted"] = p.reset_index(drop=True)
    return out


def score_table(run: ConceptRun) -> pd.DataFrame:
    """Headline label-score numbers: SAE vs raw dimensions vs random SAE (offline detection)."""
    rows = {"SAE": score_summary(run.scores, run.d.stats.n_fire > 0)}
    for name, (d, s) in run.baselines.items():
        rows[{"raw": "raw h_u dimensions", "random": "random SAE"}[name]] = score_summary(s, d.stats.n_fire > 0)
    rows["SAE"]["live_latents"] = int((run.d.stats.n_fire > 0).sum())
    for name, (d, _) in run.baselines.items():
        rows[{"raw": "raw h_u dimensions", "random": "random SAE"}[name]]["live_latents"] = int((d.stats.n_fire > 0).sum())
    for name, (d, s) in run.others.items():
        rows[name] = {**score_summary(s, d.stats.n_fire > 0), "live_latents": int((d.stats.n_fire > 0).sum())}
    return pd.DataFrame(rows).T


def profile_views(run: ConceptRun, acts: dict, ctx, user: int = 36, movie_title: str = "Wonder Boys (2000)",
                  top: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A user's concepts (their latest instance: test, else dev, else train) and a movie's concepts
    (by total activation strength over training sequences holding it). Falls back to the first user /
    the most popular item when the named ones are absent (tiny data, Grocery)."""
    names = dict(zip(run.labels["latent"].astype(int), run.labels["name"].fillna("").astype(str)))
    row = None
    for s in ("test", "dev", "train"):
        hit = np.flatnonzero(ctx.inst[s].user == user)
        if hit.size:
            row = (s, hit[-1])
            break
    if row is None:
        row = ("train", len(ctx.inst["train"]) - 1)
        user = int(ctx.inst["train"].user[-1])
    s, r = row
    uv = instance_concepts(acts[s][0][r:r + 1], acts[s][1][r:r + 1], names, top=top, m=run.d.m)
    uv.insert(0, "user", user)
    uv.insert(1, "split", s)
    items = ctx.ds.items
    if "title" in items.columns and (items["title"] == movie_title).any():
        item = int(items.loc[items["title"] == movie_title, "item_id"].iloc[0])
    else:
        item = int(items.sort_values("popularity", ascending=False)["item_id"].iloc[0])
    ic = item_concepts(acts["train"][0], acts["train"][1], ctx.inst["train"].hist, run.d.n_items, names, top=top,
                       m=run.d.m)
    mv = ic[ic["item_id"] == item].copy()
    mv.insert(1, "title", str(run.d.display[item]))
    return uv.reset_index(drop=True), mv.reset_index(drop=True)


def example_explanations(run: ConceptRun, acts: dict, ctx, sae_model, n: int = 2, top: int = 10) -> pd.DataFrame:
    """Explain the top-10 recommendations of `n` test instances (the first test instances of distinct
    users), with the user's known items masked as in evaluation."""
    import torch

    from .metrics import mask_known

    inst = ctx.inst["test"]
    _, first = np.unique(inst.user, return_index=True)
    rows = np.sort(first)[:n]
    names = dict(zip(run.labels["latent"].astype(int), run.labels["name"].fillna("").astype(str)))
    E = ctx.model.item_emb.weight.detach()
    mask = torch.isinf(mask_known(torch.zeros(len(rows), E.shape[0]), inst.user[rows], *ctx.mask)).numpy()
    df = explain_recommendations(acts["test"][0][rows], acts["test"][1][rows], sae_model.W_dec.detach().numpy(),
                                 sae_model.b_dec.detach().numpy(), E.numpy(), ctx.ds.items, top=top, labels=names,
                                 mask=mask, instances=rows)
    return df


def save_concept_outputs(cfg, run: ConceptRun, expl: pd.DataFrame, user_view: pd.DataFrame,
                         movie_view: pd.DataFrame, scores: pd.DataFrame) -> dict:
    """Full tables to the run folder; trimmed tables (top 20 items per latent), scores and examples to
    reports/<dataset>/concepts/. Returns the summary.json section."""
    save_dictionaries(run.tables, Path(cfg.run_dir) / "concepts")
    small = dict(run.tables)
    small["latent_items"] = small["latent_items"][small["latent_items"]["rank"] <= 20]
    for name in ("genre_enrichment", "decade_enrichment"):
        small[name] = small[name][small[name]["significant"]]
    small["scores_raw_dimensions"] = run.baselines["raw"][1]
    small["scores_random_sae"] = run.baselines["random"][1]
    small["explanations"] = expl
    small["user_profile"] = user_view
    small["movie_profile"] = movie_view
    if run.judge is not None:
        small["judge"] = run.judge
    rep = Path(cfg.report_dir) / "concepts"
    for name, df in small.items():
        with artifacts.atomic_path(rep / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
    examples = []
    for j in pick_example_latents(run, 10):
        lab = run.labels[run.labels["latent"] == j].iloc[0]
        sc = run.scores[run.scores["latent"] == j].iloc[0]
        t = run.d.tables
        examples.append({"latent": j, "name": lab["name"], "description": lab["description"],
                         "labeler": lab["labeler"], "freq": float(run.d.stats.freq[j]),
                         "auc_random": float(sc["auc_random"]), "bal_acc_random": float(sc["bal_acc_random"]),
                         "auc_matched": float(sc["auc_matched"]), "n_pos": int(sc["n_pos"]),
                         "top_by_lift": _titles(run.d, t.item[t.ptr[j]:min(t.ptr[j + 1], t.ptr[j] + 5)])})
    out = {"live_latents": int((run.d.stats.n_fire > 0).sum()), "n_latents": run.d.m,
           "generic_latents": int(run.d.generic.sum()), "popularity_latents": int(run.d.popularity_flag.sum()),
           "labeler": cfg.labeler, "label_status": run.labels["status"].value_counts().to_dict(),
           "scores": {k: {c: (None if pd.isna(v) else float(v)) for c, v in row.items()}
                      for k, row in scores.to_dict(orient="index").items()},
           "seconds": run.seconds, "examples": examples,
           "detection_by_window": [{k: (None if pd.isna(v) else (v if isinstance(v, str) else float(v)))
                                    for k, v in r.items()}
                                   for r in run.tables.get("detection_by_window", pd.DataFrame()).to_dict("records")],
           "explanations": render_explanations(expl, n_reasons=3)}
    if run.judge is not None:
        out["judge"] = {"interpretable_share": float(run.judge["interpretable"].mean()),
                        "mean_confidence": float(run.judge["confidence"].mean())}
    return out


def lookup_tables(run: ConceptRun, acts: dict, ctx, top: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the concept browser: every user's top latents (their latest instance, test > dev > train) and
    every item's top concepts by total strength over training sequences."""
    names = dict(zip(run.labels["latent"].astype(int), run.labels["name"].fillna("").astype(str)))
    frames = []
    seen = np.zeros(ctx.ds.n_users, bool)
    for s in ("test", "dev", "train"):
        users = ctx.inst[s].user
        last = len(users) - 1 - np.unique(users[::-1], return_index=True)[1]  # latest instance per user
        last = last[~seen[users[last]]]
        seen[users[last]] = True
        df = instance_concepts(acts[s][0][last], acts[s][1][last], names, top=top, m=run.d.m)
        df.insert(0, "user", users[last][df["instance"].to_numpy()])
        df.insert(1, "split", s)
        frames.append(df)
    users_df = pd.concat(frames, ignore_index=True)
    movies_df = item_concepts(acts["train"][0], acts["train"][1], ctx.inst["train"].hist, run.d.n_items, names,
                              top=top, m=run.d.m)
    return users_df, movies_df
