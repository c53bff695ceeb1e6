"""Offline detection scores (delphi style, no LLM): can a latent's label signature (`cards.label_signature`)
tell its activating HELD-OUT sequences from non-activating ones? Thresholds are set on training sequences,
scores are ROC-AUC and balanced accuracy against random and popularity-matched negatives. The same scoring
serves the SAE and its baselines (the signed raw dimensions of h_u at the SAE's firing rate, a random SAE),
and the window sweep asks which part of the history a latent reads.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import progress
from .cards import label_signature, latent_cards
from .config import RunConfig
from .dictionary import (ConceptDictionary, Firing, ItemFeatures, activation_csr, build_dictionaries, incidence,
                         sequence_popularity)

WINDOWS = (1, 3, 9)         # history windows (most recent items) of the detection sweep, besides the whole history
STRONG_Q = 0.5             # the sweep's second view: positives = each latent's upper half of its own firings
CALIB_POS = 200            # training positives per latent for the detection threshold (activation-stratified)
CALIB_NEG = 5000           # shared pool of random training sequences for the threshold's negatives
POP_BINS = 10              # popularity quantile bins for the matched negatives
MIN_POS_SUMMARY = 5        # score_summary counts a latent only with at least 5 held-out positives


# ----------------------------------------------------------------------------------------------------
# Signatures as matrices, scores


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



# ----------------------------------------------------------------------------------------------------
# Thresholds, AUC and balanced accuracy, the detection table


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
                     pop_bins: int = POP_BINS, block: int = 256, strong_q: float = 0.0,
                     vocabulary: str = "exemplars") -> pd.DataFrame:
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
    `vocabulary` (cards.VOCABULARIES) turns cards into signatures: 'exemplars' (items, genres, decades,
    popularity) or 'metadata' (only what the offline label's name states); given signature dicts are used as
    they are.

    strong_q > 0 asks the question only of each latent's strong firings: positives are held-out activations
    at or above the latent's own training q-quantile (`strong_thresholds`; the threshold calibration uses the
    same strong training firings), negatives stay the non-activating sequences, and weaker activations are
    on neither side. The reference judges labels on each latent's top activations only (protocol.md §4.1:
    decile level >= 5, top 10 by strength); q = 0.5 is the closest whole-population analogue."""
    m = d.m
    if signatures is None:
        signatures = latent_cards(d, n_examples=0)
    sigs = [s if "popularity" in s and isinstance(s["popularity"], Mapping) else label_signature(s, vocabulary)
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
    Ah = activation_csr(heldout_idx, heldout_val, m).tocsc()
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


FIRINGS = {"all": 0.0, "upper_half": STRONG_Q}   # the positives every vocabulary is scored on (name -> strong_q)


def vocabulary_scores(d: ConceptDictionary, cards: Sequence[Mapping] | None, heldout_idx: np.ndarray,
                      heldout_val: np.ndarray, heldout_hist: np.ndarray, vocabulary: str = "metadata", seed: int = 0,
                      firings: Mapping[str, float] = FIRINGS) -> dict[str, pd.DataFrame]:
    """`detection_scores` of one vocabulary for each kind of positives in `firings` (all firings, each
    latent's upper half): name -> per-latent table. cards None = this dictionary's cards."""
    if cards is None:
        cards = latent_cards(d, n_examples=0)
    return {name: detection_scores(d, cards, heldout_idx, heldout_val, heldout_hist, seed=seed, strong_q=q,
                                   vocabulary=vocabulary) for name, q in firings.items()}


def metadata_scores(d: ConceptDictionary, heldout_idx: np.ndarray, heldout_val: np.ndarray,
                    heldout_hist: np.ndarray, cards: Sequence[Mapping] | None = None, seed: int = 0) -> dict[str, dict]:
    """The score a label earns from what a person can read in it: detection with the metadata vocabulary
    (genres / categories, decades and popularity the offline label names, no items), summarised by
    `score_summary` over live latents for all firings ('all') and each latent's upper half ('upper_half').
    The same call serves any SAE or baseline: build `d` with `dictionary.build_dictionaries` on training
    codes and pass the held-out codes (idx, val) and histories."""
    live = d.stats.n_fire > 0
    return {name: score_summary(t, live) for name, t in
            vocabulary_scores(d, cards, heldout_idx, heldout_val, heldout_hist, "metadata", seed).items()}


def dictionary_and_scores(idx_train, val_train, hist_train, idx_held, val_held, hist_held, items: pd.DataFrame,
                          m: int, top_n: int, seed: int = 0,
                          item_pool: int = RunConfig.item_pool) -> tuple[ConceptDictionary, list[dict], pd.DataFrame]:
    """Build a dictionary on training instances, its cards, and its offline detection scores on held-out
    instances: the same call serves the SAE and both baselines."""
    d = build_dictionaries(idx_train, val_train, hist_train, items, m, top_n=top_n, item_pool=item_pool)
    cards = latent_cards(d)
    scores = detection_scores(d, cards, idx_held, val_held, hist_held, seed=seed)
    return d, cards, scores



# ----------------------------------------------------------------------------------------------------
# Baselines: the raw dimensions of h_u as sparse codes


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


def raw_dimension_k(d_in: int, k: int, m: int) -> int:
    """k for the raw-dimension baseline: the SAE's firing rate (k / m) applied to 2 * d_in signed units."""
    return max(1, round(2 * d_in * k / m))


def raw_dimension_codes(h_train: np.ndarray, h_held: np.ndarray, k_sae: int, m_sae: int) -> tuple:
    """The raw-dimension baseline of an SAE with m_sae latents and k_sae active: (idx_train, val_train,
    idx_held, val_held, m) of the signed h_u dimensions (standardised with the TRAINING mean/std) firing at
    the SAE's rate (`raw_dimension_k`), m = 2 * d."""
    x_tr, x_h = np.asarray(h_train), np.asarray(h_held)
    kr = raw_dimension_k(x_tr.shape[1], k_sae, m_sae)
    mu, sd = x_tr.mean(0), x_tr.std(0)
    return (*dense_to_sparse(x_tr, kr, both_signs=True), *dense_to_sparse(x_h, kr, mu, sd, both_signs=True),
            2 * x_tr.shape[1])



# ----------------------------------------------------------------------------------------------------
# Which part of the history does a latent read? (window sweep)


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
                 keep: dict | None = None, item_pool: int = RunConfig.item_pool) -> pd.DataFrame:
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
        progress.step(f"window {w} of {ws[-1]}")
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

