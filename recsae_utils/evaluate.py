"""Evaluation of an SAE plugged into SASRec: recommendation metrics with the reconstruction in place of
h_u, reconstruction health, and ranking-native fidelity (shared/spec/metrics.md)."""
from __future__ import annotations

import numpy as np
import torch

from . import metrics
from .data import Instances
from .train import rank_targets


def plugged_metrics(item_emb: torch.Tensor, h: torch.Tensor, inst: Instances, mask_csr) -> dict[str, float]:
    """HR/NDCG@K when `h` (SASRec's own h_u, or an SAE reconstruction of it) scores the catalogue."""
    return metrics.ranking_metrics(rank_targets(item_emb, h, inst, mask_csr))


def _masked_scores(item_emb: torch.Tensor, h: torch.Tensor, inst: Instances, mask_csr) -> torch.Tensor:
    indptr, known = mask_csr
    return metrics.mask_known(h @ item_emb.T, inst.user, indptr, known)


def fidelity(item_emb: torch.Tensor, h: torch.Tensor, h_hat: torch.Tensor, h_mean: torch.Tensor,
             inst: Instances, mask_csr, metric: str = "NDCG@10", k: int = 10) -> dict[str, float]:
    """Retention, metric recovered against the mean-user ablation, top-k overlap and catalog KL."""
    r_orig = plugged_metrics(item_emb, h, inst, mask_csr)[metric]
    r_sae = plugged_metrics(item_emb, h_hat, inst, mask_csr)[metric]
    r_abl = plugged_metrics(item_emb, h_mean.expand_as(h), inst, mask_csr)[metric]
    s_orig = _masked_scores(item_emb, h, inst, mask_csr)
    s_sae = _masked_scores(item_emb, h_hat, inst, mask_csr)
    return {
        f"{metric}_orig": r_orig, f"{metric}_sae": r_sae, f"{metric}_ablated": r_abl,
        "retention": r_sae / r_orig if r_orig else float("nan"),
        "metric_recovered": (r_sae - r_abl) / (r_orig - r_abl) if r_orig != r_abl else float("nan"),
        f"top{k}_overlap": metrics.topk_overlap(s_orig, s_sae, k),
        "catalog_kl": metrics.catalog_kl(s_orig, s_sae),
    }


def sae_health(x: torch.Tensor, x_hat: torch.Tensor, latent_idx: torch.Tensor, n_latents: int) -> dict:
    """Reconstruction metrics plus firing statistics (dead = never fires on the given set: the window is
    that set's size in samples, stated in the result)."""
    out = metrics.reconstruction_metrics(x, x_hat)
    fs = metrics.firing_stats(latent_idx, n_latents)
    out.update({"dead_fraction": fs["dead_fraction"], "dense_fraction": fs["dense_fraction"],
                "dead_window_samples": fs["window_samples"], "l0": float(latent_idx.shape[1])})
    return out, fs["freq"]


def log10_freq(freq: np.ndarray, n: int) -> np.ndarray:
    """log10 firing frequency with dead latents placed one decade below the smallest observable value."""
    return np.log10(np.where(freq > 0, freq, 0.1 / max(n, 1)))
