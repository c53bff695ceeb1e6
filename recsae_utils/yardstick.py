"""The concept yardstick (stage 07, notebooks/07_yardstick.ipynb): per metadata concept, one direction per
method, each chosen on the training split only, compared the way the field compares concept methods
(docs/yardstick.md).

Concepts are metadata values with support (an ML-1M genre or decade, a Grocery category), `MIN_ITEMS`
items or more. A training instance is positive when its target item carries the concept (variant
"history": when at least half of its history does). The methods:

- `diffmean`: mean h_u of positives minus mean of negatives; `probe`: an L2 logistic regression's weights;
- `sae_in`: the SAE latent most enriched among positives (what a reader finds by its label), its decoder row;
- `sae_out`: the SAE latent with the highest output score (below); `sae_multi3` / `sae_multi5`: the top
  3 / 5 latents by output score raised together in the code, each in proportion to its score, and decoded;
- `raw`: the best signed h_u dimension by output score; `random`: the best of as many seeded random unit
  directions as the SAE has latents, by output score; `random_sae_in` / `random_sae_out`: a random SAE of
  the SAE's shape treated like the SAE;
- `item_dir`: mean item embedding of the concept minus the rest (an output-space reference).

Output score of a unit direction d for concept C: mean of e_i . d over C's items minus over the other items.

Every edit here adds a fixed vector to h_u (a code-space edit of an SAE keeps its reconstruction error, so
raising latents by dz adds dz W_dec to h), and scores are linear in h: steering by t along d adds
t (E d) to each score row. `matched_strengths` finds, per direction, the t at which the mean catalogue
KL(softmax(s) || softmax(s')) over held-out rows equals each target, by a bracketed bisection on log t.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from .dictionary import ItemFeatures
from .interventions import rank_all, signed_basis
from .metrics import ndcg_per_instance, ranks_from_scores

MIN_ITEMS = 30                    # items a concept needs
MAX_SHARE = 0.5                   # a value held by more of the catalogue is the absence of the others: left out
KL_TARGETS = (0.05, 0.1, 0.3, 1.0)
K_SPARSE = (1, 2, 4, 8)
MULTI_N = (3, 5)
TOP = 10                          # the top-10 whose concept share is measured
IO_TOP = 20                       # input-output agreement: top-20 items on each side
KL_RTOL = 0.005                   # matched KL within 0.5% of its target
METHODS = ("diffmean", "probe", "sae_in", "sae_out", *(f"sae_multi{n}" for n in MULTI_N), "raw", "random",
           "random_sae_in", "random_sae_out", "item_dir")
HISTORY_METHODS = ("diffmean", "probe", "sae_in")   # the ones that read positives: also run on the history variant


# ---------------------------------------------------------------------------------------------------
# Concepts and positives


@dataclass
class ConceptSet:
    names: list[str]      # e.g. 'genre:Horror', 'decade:1980'
    items: np.ndarray     # (n_items, C) bool; row 0 (padding) never set


def concept_set(feats: ItemFeatures, n_items: int, min_items: int = MIN_ITEMS, max_share: float = MAX_SHARE
                ) -> ConceptSet:
    """The features held by at least `min_items` items and by at most `max_share` of the catalogue."""
    M = np.asarray(sp.csr_matrix(feats.M)[:n_items].toarray() > 0)
    M[0] = False
    size = M.sum(0)
    keep = np.flatnonzero((size >= min_items) & (size <= max_share * (n_items - 1)))
    return ConceptSet([feats.names[f] for f in keep], M[:, keep])


def positives(cs: ConceptSet, targets: np.ndarray, hist: np.ndarray | None = None) -> np.ndarray:
    """(n, C) bool: the target item carries the concept, or (with `hist`, padding 0) at least half of the
    history's items do."""
    if hist is None:
        return cs.items[np.asarray(targets)]
    hist = np.asarray(hist)
    count = np.zeros((len(hist), cs.items.shape[1]), dtype=np.int16)
    for col in hist.T:                      # one gather per history position, not per instance
        count += cs.items[col]
    length = (hist > 0).sum(1, keepdims=True)
    return (2 * count >= length) & (length > 0)


def item_directions(E: Tensor, items: np.ndarray) -> Tensor:
    """(C, d): mean embedding of each concept's items minus the mean of the other items (padding left out)."""
    Eb = torch.as_tensor(E, dtype=torch.float64)[1:]
    Y = torch.as_tensor(items[1:], dtype=torch.float64)
    return (Y.T @ Eb) / Y.sum(0)[:, None] - ((1 - Y).T @ Eb) / (1 - Y).sum(0)[:, None]


def output_scores(E: Tensor, D: Tensor, items: np.ndarray) -> np.ndarray:
    """(m, C): for each unit direction D[j] / ||D[j]|| and concept, the mean of e_i . d over the concept's
    items minus the mean over the other items: how much steering along it favours the concept per unit."""
    Dn = F.normalize(torch.as_tensor(D, dtype=torch.float64), dim=1)
    return (Dn @ item_directions(E, items).T).numpy()


# ---------------------------------------------------------------------------------------------------
# Directions per concept


def firing_matrix(idx: np.ndarray, val: np.ndarray, m: int) -> sp.csr_matrix:
    """(n, m) sparse activations of a TopK-style code (idx, val) (n, k); zero values dropped."""
    idx, val = np.asarray(idx), np.asarray(val, dtype=np.float32)
    on = val > 0
    rows = np.repeat(np.arange(len(idx)), on.sum(1))
    return sp.csr_matrix((val[on], (rows, idx[on])), shape=(len(idx), m))


def enrichment(Z: sp.csr_matrix, pos: np.ndarray, z: float = 1.96) -> np.ndarray:
    """(m, C): lower confidence bound of the log odds ratio of firing among positives against negatives
    (+0.5 in every cell): large only for a latent that fires on positives both often and selectively."""
    fires = (Z > 0).astype(np.float64)
    P = np.asarray(pos, dtype=np.float64)
    a = np.asarray(fires.T @ P)                            # fires on positives (m, C)
    f = np.asarray(fires.sum(0)).ravel()[:, None]
    npos, n = P.sum(0)[None, :], float(len(P))
    b, c = f - a, npos - a
    d = n - npos - b
    cells = [x + 0.5 for x in (a, b, c, d)]
    lor = np.log(cells[0] * cells[3] / (cells[1] * cells[2]))
    return lor - z * np.sqrt(sum(1.0 / x for x in cells))


def diffmean(h: Tensor, pos: np.ndarray) -> Tensor:
    """(C, d): mean h of positives minus mean h of negatives."""
    H = torch.as_tensor(h, dtype=torch.float64)
    P = torch.as_tensor(pos, dtype=torch.float64)
    return (P.T @ H) / P.sum(0).clamp(min=1)[:, None] - ((1 - P).T @ H) / (1 - P).sum(0).clamp(min=1)[:, None]


def probe_directions(h: np.ndarray, pos: np.ndarray, C: float = 1.0) -> np.ndarray:
    """(C, d): L2 logistic-regression weights per concept, fitted on standardised h and mapped back to h space
    (w / sigma), so that steering along them moves h the way the probe reads it."""
    from sklearn.linear_model import LogisticRegression

    h = np.asarray(h, dtype=np.float64)
    mu, sd = h.mean(0), h.std(0) + 1e-12
    X = (h - mu) / sd
    out = np.zeros((pos.shape[1], h.shape[1]))
    for c in range(pos.shape[1]):
        y = pos[:, c]
        if 0 < y.sum() < len(y):
            out[c] = LogisticRegression(C=C, max_iter=1000).fit(X, y).coef_[0] / sd
    return out


def random_directions(n: int, d: int, seed: int) -> Tensor:
    """(n, d) seeded random unit directions."""
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


def best_by_output(scores: np.ndarray) -> np.ndarray:
    """(C,) the unit with the highest output score per concept (ties: lowest id)."""
    return np.argmax(scores, axis=0)


def multi_direction(D: Tensor, scores: np.ndarray, n: int) -> Tensor:
    """(C, d): the code-space edit raising the top-n latents by output score, each in proportion to its
    (positive) score, decoded: sum_j s_j W_dec[j]."""
    Dn = F.normalize(torch.as_tensor(D, dtype=torch.float64), dim=1)
    top, w = top_weights(scores, n)
    return torch.einsum("nc,ncd->cd", torch.as_tensor(w), Dn[torch.as_tensor(top)])


def top_weights(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per concept (column of scores (m, C)), its top-n units by output score and their weights: the positive
    scores, or the best unit alone when no unit favours the concept. (n, C) each."""
    top = np.argsort(-scores, axis=0, kind="stable")[:n]              # (n, C)
    w = np.clip(np.take_along_axis(scores, top, 0), 0, None)          # (n, C)
    first = np.zeros_like(w)
    first[0] = 1.0
    return top, np.where(w.sum(0, keepdims=True) > 0, w, first)   # no latent favours the concept: the best alone


def steering_latents(E: Tensor, D: Tensor, cs: ConceptSet, n: int = MULTI_N[0]) -> dict[str, dict[int, float]]:
    """Concept name -> {latent: weight}: its top-n latents by output score, weighted as `multi_direction`
    weights them, for `interventions.recommend(..., steer="genre:Horror")`. With unit-norm decoder rows the
    code-space edit `interventions.concept_edit` builds from them is the `sae_multi<n>` direction."""
    Dn = F.normalize(torch.as_tensor(D, dtype=torch.float64), dim=1)
    norms = torch.as_tensor(D, dtype=torch.float64).norm(dim=1).clamp_min(1e-12).numpy()
    top, w = top_weights(output_scores(E, Dn, cs.items), n)
    # weights on the unit directions; divided by the row norms so that z-space raises decode to them
    return {name: {int(j): float(w[i, c] / norms[j]) for i, j in enumerate(top[:, c]) if w[i, c] > 0}
            for c, name in enumerate(cs.names)}


@dataclass
class Units:
    """One model's dictionary of unit directions and its training code."""

    D: Tensor                 # (m, d)
    Z_train: sp.csr_matrix    # (n_train, m) activations


def concept_directions(E: Tensor, h_train: Tensor, pos: np.ndarray, items: np.ndarray, sae: Units,
                       random_sae: Units, probe_rows: np.ndarray, seed: int = 0,
                       methods: tuple = METHODS) -> tuple[dict[str, Tensor], dict[str, np.ndarray]]:
    """Every method's direction per concept, (C, d) each, from training data only, and which unit each
    single-unit method picked ((C,) ids; signed raw dimensions as `interventions.signed_basis` numbers them)."""
    d = h_train.shape[1]
    out, picked = {}, {}
    s_out = output_scores(E, sae.D, items)
    for name, units in (("sae", sae), ("random_sae", random_sae)):
        sc = s_out if name == "sae" else output_scores(E, units.D, items)
        if f"{name}_out" in methods:
            picked[f"{name}_out"] = best_by_output(sc)
            out[f"{name}_out"] = torch.as_tensor(units.D, dtype=torch.float64)[picked[f"{name}_out"]]
        if f"{name}_in" in methods:
            picked[f"{name}_in"] = np.argmax(enrichment(units.Z_train, pos), axis=0)
            out[f"{name}_in"] = torch.as_tensor(units.D, dtype=torch.float64)[picked[f"{name}_in"]]
    for n in MULTI_N:
        if f"sae_multi{n}" in methods:
            out[f"sae_multi{n}"] = multi_direction(sae.D, s_out, n)
    if "diffmean" in methods:
        out["diffmean"] = diffmean(h_train, pos)
    if "probe" in methods:
        out["probe"] = torch.as_tensor(probe_directions(np.asarray(h_train)[probe_rows], pos[probe_rows]))
    if "raw" in methods:
        basis = signed_basis(d).double()
        picked["raw"] = best_by_output(output_scores(E, basis, items))
        out["raw"] = basis[picked["raw"]]
    if "random" in methods:
        R = random_directions(len(sae.D), d, seed)
        picked["random"] = best_by_output(output_scores(E, R, items))
        out["random"] = R[picked["random"]]
    if "item_dir" in methods:
        out["item_dir"] = item_directions(E, items)
    return {k: F.normalize(v.float(), dim=1) for k, v in out.items()}, picked


# ---------------------------------------------------------------------------------------------------
# Steering at matched disruption


@dataclass
class Rows:
    """The held-out rows every direction is steered on, unedited."""

    S0: Tensor        # (N, n_items) masked scores (known items and padding at -inf)
    lse0: Tensor      # (N,) logsumexp of S0
    p0: Tensor        # (N, n_items) softmax of S0
    top0: Tensor      # (N, TOP)
    t0: Tensor        # (N,) target scores
    targets: Tensor   # (N,)
    ndcg0: np.ndarray  # (N,) NDCG@10 unedited


def steering_rows(E: Tensor, h: Tensor, users: np.ndarray, targets: np.ndarray, mask: tuple) -> Rows:
    """Masked scores of h against the item table with ReChorus masking, and what steering compares against."""
    E = torch.as_tensor(E).float()
    r = rank_all(E, torch.as_tensor(h).float(), users, mask, targets, k=TOP)
    tg = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    t0 = (torch.as_tensor(h).float() * E[tg]).sum(1)
    return Rows(r.scores, torch.logsumexp(r.scores, 1), torch.softmax(r.scores, 1), r.top, t0, tg,
                ndcg_per_instance(r.ranks.numpy(), TOP))


def mean_kl(rows: Rows, P: Tensor, t: Tensor) -> Tensor:
    """(M,) mean over rows of KL(softmax(S0) || softmax(S0 + t_m P_m)) for score shifts P (M, n_items):
    lse(S0 + t p) - lse(S0) - t <softmax(S0), p> per row (masked items stay at -inf)."""
    s = rows.S0[None] + t[:, None, None] * P[:, None, :]
    return (torch.logsumexp(s, -1) - rows.lse0 - t[:, None] * (P @ rows.p0.T)).mean(1)


def matched_strengths(rows: Rows, P: Tensor, targets=KL_TARGETS, rtol: float = KL_RTOL, chunk: int = 8,
                      max_iter: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Per score shift P[m] (from a unit direction: E d) and target KL, the strength t > 0 with mean KL = target
    within `rtol`: the bracket is doubled until it holds the target, then halved in log t (KL grows
    monotonically with t: it is convex in t and 0 at t = 0). Returns (strengths, KLs reached), (M, T) each."""
    M, T = len(P), len(targets)
    goal = torch.tensor(targets, dtype=torch.float64).repeat(M)           # (M*T,) in (m, target) order
    which = torch.arange(M).repeat_interleave(T)
    # quadratic start: KL ~ t^2 Var_p0(p) / 2 for small t
    var = ((P ** 2) @ rows.p0.T).mean(1).double() - ((P @ rows.p0.T) ** 2).mean(1).double()
    t = torch.sqrt(2 * goal / var[which].clamp(min=1e-12))
    lo, hi = torch.zeros_like(t), torch.full_like(t, float("inf"))
    kl = _kl_pairs(rows, P, which, t, chunk)
    for _ in range(max_iter):
        ok = (kl - goal).abs() <= rtol * goal
        if bool(ok.all()):
            break
        lo = torch.where(~ok & (kl < goal), t, lo)
        hi = torch.where(~ok & (kl > goal), t, hi)
        nxt = torch.where(torch.isinf(hi), 2 * t, torch.where(lo > 0, torch.sqrt(lo * hi), hi / 2))
        t = torch.where(ok, t, nxt)
        todo = torch.nonzero(~ok).flatten()
        kl[todo] = _kl_pairs(rows, P, which[todo], t[todo], chunk)
    ok = (kl - goal).abs() <= rtol * goal
    t = torch.where(ok, t, torch.full_like(t, float("nan")))   # a shift that cannot reach the target: no strength
    return t.view(M, T).numpy(), kl.view(M, T).numpy()


def _kl_pairs(rows: Rows, P: Tensor, which: Tensor, t: Tensor, chunk: int) -> Tensor:
    """mean_kl for (shift id, strength) pairs, in chunks."""
    return torch.cat([mean_kl(rows, P[which[i:i + chunk]], t[i:i + chunk].float()).double()
                      for i in range(0, len(t), chunk)])


def steer_outcome(rows: Rows, P: Tensor, t: np.ndarray, items: np.ndarray, concept: np.ndarray,
                  chunk: int = 8) -> pd.DataFrame:
    """For shifts P (M, n_items) at strengths t (M,) and each shift's concept id `concept` (M,): the concept's
    share of the masked top-10 before and after, and NDCG@10 of the target before and after (means over rows)."""
    Y = torch.as_tensor(items, dtype=torch.float32)                      # (n_items, C)
    out = []
    t = np.asarray(t, dtype=np.float64)
    for i in range(0, len(P), chunk):
        sl = slice(i, min(i + chunk, len(P)))
        tt = torch.as_tensor(np.nan_to_num(t[sl], nan=0.0), dtype=torch.float32)   # no strength: measured unedited
        s = rows.S0[None] + tt[:, None, None] * P[sl, None, :]           # (Mc, N, n)
        top = s.topk(TOP, dim=-1).indices
        tgt = rows.t0[None] + tt[:, None] * P[sl][:, rows.targets]        # (Mc, N)
        ranks = ranks_from_scores(s.reshape(-1, s.shape[-1]), tgt.reshape(-1)).view(tgt.shape)
        for j, c in enumerate(np.asarray(concept)[sl]):
            after = float(Y[top[j], c].mean())
            before = float(Y[rows.top0, c].mean())
            nd1 = float(ndcg_per_instance(ranks[j].numpy(), TOP).mean())
            if np.isnan(t[sl][j]):
                after = nd1 = float("nan")
            out.append({"share_before": before, "share_after": after, "gain": after - before,
                        "ndcg_before": float(rows.ndcg0.mean()), "ndcg_after": nd1})
    return pd.DataFrame(out)


def steering_table(E: Tensor, rows: Rows, dirs: dict[str, Tensor], cs: ConceptSet, variant: str = "target",
                   targets=KL_TARGETS) -> pd.DataFrame:
    """One row per (method, concept, target KL): strength, KL reached, concept share before/after, gain,
    NDCG@10 before/after."""
    names = list(dirs)
    C = len(cs.names)
    U = torch.cat([dirs[k] for k in names]).float()                       # (len(names) * C, d)
    P = U @ torch.as_tensor(E).float().T                                  # score shift per unit strength
    t, kl = matched_strengths(rows, P, targets)
    frames = []
    concept = np.tile(np.arange(C), len(names))
    for ti, target in enumerate(targets):
        res = steer_outcome(rows, P, t[:, ti], cs.items, concept)
        frames.append(res.assign(method=np.repeat(names, C), concept=np.array(cs.names)[concept], variant=variant,
                                 kl_target=target, strength=t[:, ti], kl=kl[:, ti]))
    cols = ["method", "variant", "concept", "kl_target", "strength", "kl", "share_before", "share_after", "gain",
            "ndcg_before", "ndcg_after"]
    return pd.concat(frames, ignore_index=True)[cols]


# ---------------------------------------------------------------------------------------------------
# k-sparse probing


def class_mean_gap(X, pos: np.ndarray) -> np.ndarray:
    """(units, C): |mean of positives - mean of negatives| / standard deviation, per unit of X (n, units),
    dense or scipy sparse; a constant unit scores 0."""
    P = np.asarray(pos, dtype=np.float64)
    n, npos = float(len(P)), P.sum(0)[None, :]
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        sums, tot = np.asarray(X.T @ P), np.asarray(X.sum(0)).ravel()[:, None]
        sq = np.asarray(X.multiply(X).sum(0)).ravel()[:, None]
    else:
        X = np.asarray(X, dtype=np.float64)
        sums, tot, sq = X.T @ P, X.sum(0)[:, None], (X ** 2).sum(0)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = sums / npos - (tot - sums) / (n - npos)
        sd = np.sqrt(np.clip(sq / n - (tot / n) ** 2, 0, None))
        return np.nan_to_num(np.abs(gap) / sd, nan=0.0, posinf=0.0)


def _columns(X, cols: np.ndarray) -> np.ndarray:
    return X[:, cols].toarray() if sp.issparse(X) else np.asarray(X)[:, cols]


def _auroc(X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray, y_te: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    if not (0 < y_tr.sum() < len(y_tr)) or not (0 < y_te.sum() < len(y_te)):
        return float("nan")
    mu, sd = X_tr.mean(0), X_tr.std(0) + 1e-12
    clf = LogisticRegression(max_iter=1000).fit((X_tr - mu) / sd, y_tr)
    return float(roc_auc_score(y_te, clf.decision_function((X_te - mu) / sd)))


def ksparse_probing(X_train, pos_train: np.ndarray, X_test, pos_test: np.ndarray, rows: np.ndarray,
                    ks=K_SPARSE, names: list[str] | None = None) -> pd.DataFrame:
    """Per concept and k: the k units with the largest class-mean gap on ALL training rows, a logistic
    regression on them fitted on the training sample `rows`, and its held-out AUROC. One row per
    (concept, k) with the units picked."""
    gap = class_mean_gap(X_train, pos_train)
    order = np.argsort(-gap, axis=0, kind="stable")[:max(ks)]              # (kmax, C)
    X_fit = X_train[rows]                                                  # the training sample, sliced once
    out = []
    for c in range(pos_train.shape[1]):
        cols = order[:, c]
        Xtr, Xte = _columns(X_fit, cols), _columns(X_test, cols)
        for k in ks:
            out.append({"concept": names[c] if names else c, "k": k, "units": cols[:k].tolist(),
                        "auroc": _auroc(Xtr[:, :k], pos_train[rows, c], Xte[:, :k], pos_test[:, c])})
    return pd.DataFrame(out)


def full_probe_auroc(h_train: np.ndarray, pos_train: np.ndarray, h_test: np.ndarray, pos_test: np.ndarray,
                     rows: np.ndarray, names: list[str] | None = None) -> pd.DataFrame:
    """The ceiling: a logistic regression on all of h, fitted on the training sample, held-out AUROC."""
    h_train, h_test = np.asarray(h_train, dtype=np.float64), np.asarray(h_test, dtype=np.float64)
    return pd.DataFrame([{"concept": names[c] if names else c, "k": h_train.shape[1], "units": [],
                          "auroc": _auroc(h_train[rows], pos_train[rows, c], h_test, pos_test[:, c])}
                         for c in range(pos_train.shape[1])])


def pca_basis(h_train: Tensor) -> Tensor:
    """(d, d) the principal axes of the centred training h (rows), largest variance first."""
    H = torch.as_tensor(h_train, dtype=torch.float64)
    return torch.linalg.svd(H - H.mean(0), full_matrices=False)[2]


# ---------------------------------------------------------------------------------------------------
# Input-output agreement


IO_DISAGREE = 0.1   # a latent sharing fewer of its top-20 items between its two sides is flagged (cards, browser)


def top_by_count(counts, top: int = IO_TOP) -> list[np.ndarray]:
    """Per latent, its `top` items by activation count (`dictionary.ItemTables.counts`, (m, n_items) sparse),
    most first, ties by item id: what its card lists "by count"."""
    C = sp.csr_matrix(counts)
    out = []
    for j in range(C.shape[0]):
        s = slice(C.indptr[j], C.indptr[j + 1])
        items, cnt = C.indices[s], C.data[s]
        out.append(items[np.lexsort((items, -cnt))][:top])
    return out


def io_overlap(top_in: list, D: Tensor, E: Tensor, units: np.ndarray, top: int = IO_TOP) -> np.ndarray:
    """Per unit: the share of its top-`top` items by activation (`top_in[j]`, its training firings) that are
    also among its top-`top` items by W_dec[j] . e_i (the output side)."""
    from .dictionary import promoted_items

    units = np.asarray(units, dtype=np.int64)
    if not len(units):
        return np.zeros(0)
    out_ids, _ = promoted_items(np.asarray(F.normalize(torch.as_tensor(D, dtype=torch.float64)[units], dim=1)),
                                np.asarray(torch.as_tensor(E, dtype=torch.float64)), top)
    return np.array([len(np.intersect1d(np.asarray(top_in[j])[:top], o)) / top for j, o in zip(units, out_ids)])


def label_agreement(label_feats: list, D: Tensor, E: Tensor, feats: ItemFeatures, units: np.ndarray,
                    top: int = 3) -> np.ndarray:
    """Per unit with a label (feature columns `label_feats[j]`): whether every feature its input-side label
    names is among the `top` features of its kind that its decoder direction favours most (output score)."""
    units = np.asarray([u for u in units if len(label_feats[u])], dtype=np.int64)
    if not len(units):
        return np.zeros(0, bool)
    Mf = np.asarray(sp.csr_matrix(feats.M)[:len(E)].toarray() > 0)
    Mf[0] = False
    sc = output_scores(E, torch.as_tensor(D, dtype=torch.float64)[units], Mf)        # (u, F)
    kinds = np.asarray(feats.kind)
    rank = np.zeros_like(sc, dtype=np.int64)
    for kind in np.unique(kinds):
        cols = np.flatnonzero(kinds == kind)
        rank[:, cols] = np.argsort(np.argsort(-sc[:, cols], axis=1, kind="stable"), axis=1, kind="stable")
    return np.array([bool((rank[i, label_feats[u]] < top).all()) for i, u in enumerate(units)])
