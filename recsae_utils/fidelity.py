"""Ranking-native fidelity of a reconstructed user vector: what SASRec's full ranking keeps when the SAE's
reconstruction stands in for h_u (retention with a paired-bootstrap interval, metric recovered against the
mean-user ablation, top-k overlap, catalog KL), its calibration against matched random noise, and the SAE's
reconstruction health (docs/metrics.md). Built on metrics.py's per-instance measures."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import metrics

if TYPE_CHECKING:
    from .data import Instances


def masked_scores(item_emb: torch.Tensor, h: torch.Tensor, inst: Instances, mask_csr) -> torch.Tensor:
    """Scores of every item for the rows of `h`, the items each user already knows set to -inf."""
    indptr, known = mask_csr
    return metrics.mask_known(h @ item_emb.T, inst.user, indptr, known, inplace=True)


@dataclass
class Ranked:
    """What the evaluation reads off one model's masked score matrix (`rank_pass`)."""

    ranks: np.ndarray              # 1-based target ranks, as train.rank_targets
    top: torch.Tensor | None       # (n, k) top-k item ids
    kl: torch.Tensor | None        # (n,) float64 catalog KL per row against the reference scores


def rank_pass(item_emb: torch.Tensor, h: torch.Tensor, inst: Instances, mask_csr, k: int | None = 10,
              ref_h: torch.Tensor | None = None, batch_size: int = 256) -> Ranked:
    """Target ranks, top-k ids and (given the reference's user vectors `ref_h`) the per-row catalog KL of
    user vectors `h`, from score matrices built in train.rank_targets' batches and never held whole.
    The ranks are rank_targets' (same batches, same products); the top-k and KL rows are those of the one
    product over all rows that `_masked_scores` makes: a short last batch is scored inside a full-size
    window for them, because a matrix product of a few rows may take another kernel (other roundings).
    The reference's scores are rebuilt the same way, batch by batch, so no (n, n_items) matrix is kept."""
    indptr, known = mask_csr
    n = len(inst)
    W = item_emb.to(h.dtype)
    ranks = np.empty(n, dtype=np.int64)
    top = torch.empty((n, k), dtype=torch.long) if k else None
    kl = torch.empty(n, dtype=torch.float64) if ref_h is not None else None
    for s in range(0, n, batch_size):
        e = min(s + batch_size, n)
        sc = h[s:e] @ W.T
        t = sc.gather(1, torch.from_numpy(inst.item[s:e])[:, None])[:, 0]
        sc = metrics.mask_known(sc, inst.user[s:e], indptr, known, inplace=True)
        ranks[s:e] = metrics.ranks_from_scores(sc, t).numpy()
        if top is None and kl is None:
            continue
        w0 = e - batch_size if e - s < batch_size < n else s
        if w0 != s:
            sc = metrics.mask_known(h[w0:e] @ W.T, inst.user[w0:e], indptr, known, inplace=True)[s - w0:]
        if top is not None:
            top[s:e] = sc.topk(k, dim=1).indices
        if kl is not None:
            ref = metrics.mask_known(ref_h[w0:e] @ W.T, inst.user[w0:e], indptr, known, inplace=True)[s - w0:]
            kl[s:e] = metrics.catalog_kl_rows(ref, sc)
    return Ranked(ranks, top, kl)


@dataclass
class Reference:
    """SASRec's own side of every fidelity number on one split, computed once for all SAEs and noise draws."""

    ranks: np.ndarray                  # target ranks
    h: torch.Tensor                    # SASRec's user vectors: `rank_pass` rebuilds their scores batch by batch
    top: torch.Tensor                  # (n, k) top-k item ids of the masked scores
    ablated: float                     # the metric with the mean training user in place of every h_u
    weights: np.ndarray | None = None  # metrics.bootstrap_weights of the split (NDCG@k metrics)


def reference(item_emb: torch.Tensor, h: torch.Tensor, h_mean: torch.Tensor, inst: Instances, mask_csr,
              metric: str = "NDCG@10", k: int = 10, ranks: np.ndarray | None = None) -> Reference:
    """SASRec's ranks (computed unless given) and top-k, the mean-user ablation and the bootstrap resamples
    of the split."""
    own = rank_pass(item_emb, h, inst, mask_csr, k)
    ranks = own.ranks if ranks is None else ranks
    abl = metrics.ranking_metrics(rank_pass(item_emb, h_mean.expand_as(h), inst, mask_csr, k=None).ranks)[metric]
    w = metrics.bootstrap_weights(len(ranks)) if metric.startswith("NDCG@") else None
    return Reference(ranks, h, own.top, abl, w)


def fidelity(item_emb: torch.Tensor, h: torch.Tensor, h_hat: torch.Tensor, h_mean: torch.Tensor,
             inst: Instances, mask_csr, metric: str = "NDCG@10", k: int = 10,
             ref: Reference | None = None, sae: Ranked | None = None) -> dict[str, float]:
    """Retention (with a paired-bootstrap 95% interval over the instances), metric recovered against the
    mean-user ablation, top-k overlap and catalog KL. SASRec's side (`reference`) and the SAE's ranks, top-k
    and KL rows (`rank_pass` against ref.h) are computed here unless the caller already has them."""
    ref = reference(item_emb, h, h_mean, inst, mask_csr, metric, k) if ref is None else ref
    sae = rank_pass(item_emb, h_hat, inst, mask_csr, k, ref_h=ref.h) if sae is None else sae
    ret = retention(ref.ranks, sae.ranks, metric, weights=ref.weights)
    r_orig, r_sae, r_abl = ret[f"{metric}_orig"], ret[f"{metric}_sae"], ref.ablated
    return {
        **ret, f"{metric}_ablated": r_abl,
        "metric_recovered": (r_sae - r_abl) / (r_orig - r_abl) if r_orig != r_abl else float("nan"),
        f"top{k}_overlap": metrics.topk_overlap_ids(ref.top, sae.top),
        "catalog_kl": float(sae.kl.mean()),
    }


def retention(ranks_orig, ranks_sae, metric: str = "NDCG@10", weights: np.ndarray | None = None) -> dict[str, float]:
    """metric with the SAE / metric of SASRec from the two rank arrays of one split, with a paired-bootstrap
    95% interval over its instances (NDCG@k only; `weights`: the split's bootstrap resamples if drawn)."""
    r_orig = metrics.ranking_metrics(ranks_orig)[metric]
    r_sae = metrics.ranking_metrics(ranks_sae)[metric]
    ci = (float("nan"), float("nan"))
    if metric.startswith("NDCG@") and r_orig:
        kk = int(metric.split("@")[1])
        nd = [metrics.ndcg_per_instance(r, kk) for r in (ranks_orig, ranks_sae)]
        ci = metrics.paired_ratio_ci(*nd, weights=weights)
    return {f"{metric}_orig": r_orig, f"{metric}_sae": r_sae, "retention": r_sae / r_orig if r_orig else float("nan"),
            "retention_ci_low": ci[0], "retention_ci_high": ci[1]}


def matched_noise(h: torch.Tensor, h_hat: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """h plus isotropic Gaussian noise scaled so that its FVU equals that of h_hat: the calibration for the
    fidelity metrics. Ranking is sensitive; how much retention does a perturbation of the SAE's size cost when
    it points nowhere in particular?"""
    err = float(((h - h_hat).double() ** 2).sum())
    n = torch.randn(h.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (h.double() + n * math.sqrt(err / float((n ** 2).sum()))).to(h.dtype)


def noise_calibration(item_emb: torch.Tensor, h: torch.Tensor, h_hat: torch.Tensor, inst: Instances, mask_csr,
                      draws: int = 20, seed: int = 0, metric: str = "NDCG@10", k: int = 10,
                      ranks_orig: np.ndarray | None = None, top_orig: torch.Tensor | None = None) -> dict[str, float]:
    """Retention and top-k overlap under `draws` independent `matched_noise` perturbations: mean and the
    2.5-97.5% range. One draw is not enough: the metric's own noise under one draw can be as large as the
    gap being judged (reports/benchmarks.md). SASRec's own ranks and
    top-k ids of its masked scores are computed here unless given; each draw is ranked in one `rank_pass`."""
    if ranks_orig is None or top_orig is None:
        own = rank_pass(item_emb, h, inst, mask_csr, k)
        ranks_orig = own.ranks if ranks_orig is None else ranks_orig
        top_orig = own.top if top_orig is None else top_orig
    r_orig = metrics.ranking_metrics(ranks_orig)[metric]
    ret, ov = [], []
    for d in range(draws):
        r = rank_pass(item_emb, matched_noise(h, h_hat, seed * 1000 + d), inst, mask_csr, k)
        ret.append(metrics.ranking_metrics(r.ranks)[metric] / r_orig)
        ov.append(metrics.topk_overlap_ids(top_orig, r.top))
    lo, hi = np.quantile(ret, [0.025, 0.975])
    return {"noise_matched_retention": float(np.mean(ret)), "noise_matched_retention_low": float(lo),
            "noise_matched_retention_high": float(hi), f"noise_matched_top{k}_overlap": float(np.mean(ov)),
            "noise_draws": draws}


def sae_health(x: torch.Tensor, x_hat: torch.Tensor, latent_idx: torch.Tensor, n_latents: int,
               active: torch.Tensor | None = None) -> dict:
    """Reconstruction metrics plus firing statistics (dead = never fires on the given set: the window is
    that set's size in samples, stated in the result). `active` (values > 0) is for the thresholded
    families, whose code rows are padded with value-0 slots; a TopK code counts every slot."""
    out = metrics.reconstruction_metrics(x, x_hat)
    fs = metrics.firing_stats(latent_idx, n_latents, active=active)
    l0 = float(latent_idx.shape[1]) if active is None else float(active.sum(1).double().mean())
    out.update({"dead_fraction": fs["dead_fraction"], "dense_fraction": fs["dense_fraction"],
                "dead_window_samples": fs["window_samples"], "l0": l0})
    return out, fs["freq"]
