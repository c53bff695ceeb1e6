"""Do latents come back? Match the latents of two SAEs one-to-one and measure how much of each matched
pair agrees (docs/metrics.md, "Stability").

Same h_u (SAE seeds): decoder rows are directions in one space, so pairs are matched by decoder cosine.
Different h_u (SASRec seeds): the spaces differ by more than a rotation, so pairs are matched by the
Pearson correlation of their activations on the same instances. Either way the one-to-one matching
maximises the summed similarity (scipy's linear_sum_assignment), so a latent cannot be matched twice,
as a greedy nearest neighbour would allow. For matched pairs: the Jaccard overlap of their top items
(arrays computed by the concept stage, passed in, so this module depends on nothing of it) and whether
their labels name the same concept.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

THRESHOLDS = (0.9, 0.7)


@dataclass
class Match:
    """A one-to-one matching: latent a[i] of the first SAE with b[i] of the second, similarity sim[i]."""

    a: np.ndarray
    b: np.ndarray
    sim: np.ndarray
    n_a: int             # latents of the first SAE (the denominator of the shares)

    def shares(self, thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
        """Share of the first SAE's latents matched at similarity >= each threshold."""
        return {f"matched_{t:g}": float((self.sim >= t).sum() / max(self.n_a, 1)) for t in thresholds}


def assign(sim: np.ndarray) -> Match:
    """The one-to-one matching of rows to columns that maximises the summed similarity."""
    sim = np.asarray(sim, dtype=np.float64)
    if not np.isfinite(sim).all():
        raise ValueError("similarity matrix has NaN or inf entries")
    a, b = linear_sum_assignment(sim, maximize=True)
    return Match(a, b, sim[a, b], sim.shape[0])


def decoder_cosine(W_a: np.ndarray, W_b: np.ndarray) -> np.ndarray:
    """(m_a, m_b) cosine of the decoder rows (n_latents, d_in) of two SAEs on the same h_u."""
    W_a, W_b = np.asarray(W_a, np.float64), np.asarray(W_b, np.float64)
    if W_a.shape[1] != W_b.shape[1]:
        raise ValueError(f"decoders live in different spaces: d_in {W_a.shape[1]} vs {W_b.shape[1]}")
    na = np.linalg.norm(W_a, axis=1, keepdims=True).clip(1e-12)
    nb = np.linalg.norm(W_b, axis=1, keepdims=True).clip(1e-12)
    return (W_a / na) @ (W_b / nb).T


def match_decoders(W_a: np.ndarray, W_b: np.ndarray) -> Match:
    return assign(decoder_cosine(W_a, W_b))


def _dense(idx: np.ndarray, val: np.ndarray, m: int) -> np.ndarray:
    """Dense (n, m) float64 activations from (n, k) codes; value-0 slots (padding) add nothing."""
    out = np.zeros((len(idx), m))
    np.add.at(out, (np.repeat(np.arange(len(idx)), idx.shape[1]), idx.ravel()), val.ravel())
    return out


def activation_correlation(codes_a: tuple[np.ndarray, np.ndarray], m_a: int,
                           codes_b: tuple[np.ndarray, np.ndarray], m_b: int, chunk: int = 8192) -> np.ndarray:
    """(m_a, m_b) Pearson correlation of two SAEs' activations over the same instances, from their sparse
    codes (indices, values), densified `chunk` rows at a time; sums accumulated in float64, divided once.
    A latent that never fires (zero variance) correlates 0 with everything."""
    (ia, va), (ib, vb) = codes_a, codes_b
    n = len(ia)
    if len(ib) != n:
        raise ValueError(f"codes cover different instances: {n} vs {len(ib)} rows")
    sa, sb, qa, qb, ab = np.zeros(m_a), np.zeros(m_b), np.zeros(m_a), np.zeros(m_b), np.zeros((m_a, m_b))
    for s in range(0, n, chunk):
        A = _dense(ia[s:s + chunk], va[s:s + chunk], m_a)
        B = _dense(ib[s:s + chunk], vb[s:s + chunk], m_b)
        sa += A.sum(0)
        sb += B.sum(0)
        qa += (A * A).sum(0)
        qb += (B * B).sum(0)
        ab += A.T @ B
    cov = ab / max(n, 1) - np.outer(sa, sb) / max(n, 1) ** 2
    sd_a = np.sqrt(np.clip(qa / max(n, 1) - (sa / max(n, 1)) ** 2, 0, None))
    sd_b = np.sqrt(np.clip(qb / max(n, 1) - (sb / max(n, 1)) ** 2, 0, None))
    den = np.outer(sd_a, sd_b)
    return np.divide(cov, den, out=np.zeros_like(cov), where=den > 1e-12)


def match_activations(codes_a, m_a: int, codes_b, m_b: int, chunk: int = 8192) -> Match:
    return assign(activation_correlation(codes_a, m_a, codes_b, m_b, chunk))


def top_item_jaccard(top_a: np.ndarray, top_b: np.ndarray, match: Match, n_top: int = 20) -> np.ndarray:
    """Per matched pair, the Jaccard overlap of the first n_top entries of each latent's top-item row
    (arrays (m, >= n_top) of item ids; negative ids are padding). NaN when both rows are empty."""
    A, B = np.asarray(top_a)[match.a, :n_top], np.asarray(top_b)[match.b, :n_top]
    out = np.full(len(match.a), np.nan)
    for i, (ra, rb) in enumerate(zip(A, B)):  # one small set operation per matched pair, not per sample
        sa, sb = set(ra[ra >= 0].tolist()), set(rb[rb >= 0].tolist())
        if sa or sb:
            out[i] = len(sa & sb) / len(sa | sb)
    return out


def concept_part(label: str) -> str:
    """A label's concept without its exemplars: parenthesised parts dropped, case and spaces normalised
    ("Sci-Fi (Wonder Boys, 2010), 2000s releases" -> "sci-fi, 2000s releases")."""
    s = re.sub(r"\s*\([^()]*\)", "", str(label))
    return re.sub(r"\s+", " ", s).strip().lower()


def label_agreement(labels_a: Sequence[str], labels_b: Sequence[str], match: Match) -> np.ndarray:
    """Per matched pair, whether the two labels name the same concept (exact match of `concept_part`)."""
    return np.array([concept_part(labels_a[i]) == concept_part(labels_b[j]) and concept_part(labels_a[i]) != ""
                     for i, j in zip(match.a, match.b)], dtype=bool)


def summary(match: Match, top_a=None, top_b=None, labels_a=None, labels_b=None,
            thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """The `stability` numbers of one pair of SAEs: shares matched at each threshold, median similarity,
    and over pairs matched at the first threshold, mean top-item Jaccard and label agreement (if given)."""
    out = {**match.shares(thresholds), "median_similarity": float(np.median(match.sim)) if len(match.sim) else
           float("nan"), "n_latents": match.n_a}
    good = match.sim >= thresholds[0]
    sub = Match(match.a[good], match.b[good], match.sim[good], match.n_a)
    if top_a is not None and top_b is not None:
        j = top_item_jaccard(top_a, top_b, sub)
        out["top_item_jaccard"] = float(np.nanmean(j)) if np.isfinite(j).any() else float("nan")
    if labels_a is not None and labels_b is not None:
        out["label_agreement"] = float(label_agreement(labels_a, labels_b, sub).mean()) if good.any() else float("nan")
    return out
