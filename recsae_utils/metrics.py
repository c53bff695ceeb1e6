"""Metrics: full-ranking HR/NDCG, SAE reconstruction quality, and ranking-native fidelity.

Definitions: docs/metrics.md. Sums are accumulated over the whole evaluation set and
divided once (per-batch averages of ratios are a classic bug).
"""
from __future__ import annotations

import numpy as np
import torch

TOPK = (5, 10, 20, 50)
BLOCK_ENTRIES = 2 ** 27  # entries of one working array (e.g. rows x items scores) past which work goes in row
                         # blocks; ML-1M and Grocery fit in one block, so their sums are computed as one array


def row_blocks(n: int, width: int, block: int = BLOCK_ENTRIES) -> list[slice]:
    """Slices over n rows of `width` entries each, at most `block` entries per slice (at least one row)."""
    rows = max(1, block // max(width, 1))
    return [slice(s, s + rows) for s in range(0, n, rows)]


# ---------------------------------------------------------------------------------------------------
# Ranking


def mask_known(scores: torch.Tensor, users: np.ndarray, indptr: np.ndarray, known: np.ndarray,
               inplace: bool = False) -> torch.Tensor:
    """Set every item the user is known to like (train, dev and test; ReChorus masking) to -inf.

    `scores` is (B, n_items); column 0 (padding) is always masked. Vectorised through a CSR of the
    user's items: (indptr, known). `inplace` masks a score matrix the caller owns instead of a copy (the
    copy of a large matrix costs as much as the matrix product that made it)."""
    starts, ends = indptr[users], indptr[users + 1]
    counts = ends - starts
    rows = np.repeat(np.arange(len(users)), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = known[np.repeat(starts, counts) + offs]
    scores = scores if inplace else scores.clone()
    scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")
    scores[:, 0] = float("-inf")
    return scores


def ranks_from_scores(scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """rank = 1 + #(candidates scoring >= the target): ties count against the target.

    `scores` must already hold -inf for the masked columns, the target's own column included;
    `target_scores` is the target's unmasked score (ReChorus keeps the target in column 0). On the CPU numpy
    counts the comparison: the same integers, far faster than torch's sum over a boolean matrix.

    A NaN compares False with everything, so a diverged model's targets would all rank first (NDCG 1.0):
    a NaN or +inf score, or a target score that is not finite, is an error instead (-inf marks masked items)."""
    if scores.device.type == "cpu" and target_scores.device.type == "cpu":
        s, t = scores.detach().numpy(), target_scores.detach().numpy()
        if not (np.isfinite(t).all() and (s < np.inf).all()):  # NaN < inf is False
            raise ValueError(_nonfinite_message(np.isnan(s).sum() + np.isposinf(s).sum(), (~np.isfinite(t)).sum()))
        return torch.from_numpy(1 + np.count_nonzero(s >= t[:, None], axis=1).astype(np.int64))
    if not (torch.isfinite(target_scores).all() and (scores < float("inf")).all()):
        raise ValueError(_nonfinite_message(int((~(scores < float("inf"))).sum()), int((~torch.isfinite(target_scores)).sum())))
    return 1 + (scores >= target_scores[:, None]).sum(dim=1)


def _nonfinite_message(n_scores: int, n_targets: int) -> str:
    return (f"cannot rank: {int(n_scores)} item score(s) are NaN or +inf and {int(n_targets)} target score(s) are "
            "not finite (the model or the SAE diverged, or its input holds NaN); a NaN would rank every target first")


def ndcg_per_instance(ranks: np.ndarray | torch.Tensor, k: int = 10) -> np.ndarray:
    """NDCG@k of each instance (one relevant item): 1 / log2(rank + 1) if rank <= k else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


def bootstrap_weights(n: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) float64: how often each instance is drawn in each seeded resample of `paired_ratio_ci`.
    Drawing them is most of that interval's cost, so a caller with several ratios over the same n draws once."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def paired_ratio_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(b) / mean(a), resampling instances in pairs (`weights`: the
    resamples of `bootstrap_weights(len(a), n_boot, seed)` when the caller already drew them).

    Why paired: both metrics come from the same test users, so most of their noise is shared and cancels
    in the ratio; resampling a and b independently would give a far wider, wrong interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = len(a)
    if n == 0 or len(b) != n:
        raise ValueError(f"paired_ratio_ci needs two arrays of the same non-zero length, got {len(a)} and {len(b)}")
    if weights is not None and weights.shape != (n_boot, n):
        raise ValueError(f"paired_ratio_ci: weights have shape {weights.shape}, expected {(n_boot, n)}")
    w = bootstrap_weights(n, n_boot, seed) if weights is None else weights
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = (w @ b) / (w @ a)
    lo, hi = np.nanquantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def ranking_metrics(ranks: np.ndarray | torch.Tensor, topk=TOPK) -> dict[str, float]:
    """HR@K and NDCG@K (one relevant item) from 1-based ranks, keyed like 'NDCG@10'."""
    r = torch.as_tensor(ranks, dtype=torch.float64)
    out = {}
    for k in topk:
        hit = (r <= k).double()
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float((hit / torch.log2(r + 1)).mean())
    return out


# ---------------------------------------------------------------------------------------------------
# SAE reconstruction


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """FVU, explained variance, normalised MSE (Gao et al.), cosine and L2 ratio, over a whole set."""
    x, x_hat = x.double(), x_hat.double()
    err = ((x - x_hat) ** 2).sum()
    var = ((x - x.mean(0, keepdim=True)) ** 2).sum()
    fvu = float(err / var) if var > 0 else float("nan")
    xn = x.norm(dim=1)
    nmse = float((((x - x_hat) ** 2).sum(1) / (xn ** 2).clamp_min(1e-12)).mean())
    cos = float(torch.nn.functional.cosine_similarity(x, x_hat, dim=1, eps=1e-12).mean())
    l2 = float((x_hat.norm(dim=1) / xn.clamp_min(1e-12)).mean())
    return {"fvu": fvu, "explained_variance": 1.0 - fvu, "nmse": nmse, "cosine": cos, "l2_ratio": l2}


def firing_stats(latent_idx: torch.Tensor | np.ndarray, n_latents: int, dense_threshold: float = 0.1,
                 active: torch.Tensor | None = None) -> dict:
    """Firing frequency per latent from the (n, k) indices of active latents, plus dead/dense fractions;
    `active` (n, k) bool keeps only the slots that fired (padded codes). The indices may be a numpy array
    read straight from a parquet table or a memory map (read-only): each block is copied into torch on its
    own, so the table is never shared with torch (which warns about arrays it cannot write)."""
    n = latent_idx.shape[0]
    counts = torch.zeros(n_latents, dtype=torch.float64)
    for r in row_blocks(n, 1, 1 << 16):  # row blocks: no int64 copy of a large code table (counts are exact)
        b = latent_idx[r]
        if isinstance(b, np.ndarray):
            b = torch.from_numpy(b.astype(np.int64))
        ids = b.reshape(-1).long() if active is None else b[active[r]].long()
        counts += torch.bincount(ids, minlength=n_latents).double()
    freq = (counts / max(n, 1)).numpy()
    return {"freq": freq, "dead_fraction": float((counts == 0).double().mean()),
            "dense_fraction": float((counts / max(n, 1) > dense_threshold).double().mean()),
            "window_samples": int(n)}


# ---------------------------------------------------------------------------------------------------
# Ranking-native fidelity


def topk_overlap_id_rows(ta: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
    """Jaccard overlap of each row's two top-k id lists (n, k) (float64)."""
    k = ta.shape[1]
    inter = (ta[:, :, None] == tb[:, None, :]).any(2).sum(1).double()
    return inter / (2 * k - inter)


def topk_overlap_ids(ta: torch.Tensor, tb: torch.Tensor) -> float:
    """`topk_overlap` from the two (n, k) top-k item ids, for a caller that reuses one side's."""
    return float(topk_overlap_id_rows(ta, tb).mean())


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> float:
    """Mean Jaccard overlap of the top-k lists of two (masked) score matrices."""
    return topk_overlap_ids(a.topk(k, dim=1).indices, b.topk(k, dim=1).indices)


def catalog_kl_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(softmax(a) || softmax(b)) of each row (float64); -inf columns (masked) are dropped from both. Every
    step is row-wise, so blocks of rows give the same numbers as the whole matrix."""
    fin = torch.isfinite(a)
    la = torch.log_softmax(a.double().masked_fill(~fin, float("-inf")), dim=1)
    lb = torch.log_softmax(b.double().masked_fill(~fin, float("-inf")), dim=1)
    return (la.exp() * (la - lb)).masked_fill(~fin, 0.0).sum(1)


def catalog_kl(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean KL(softmax(a) || softmax(b)) over rows; -inf columns (masked) are dropped from both."""
    return float(catalog_kl_rows(a, b).mean())
