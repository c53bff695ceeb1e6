"""Stage 04: SASRec and every fitted SAE (plus a random SAE of the main shape) on dev and test: the
recommendation metrics with the reconstruction plugged in, reconstruction health and ranking-native fidelity."""
from __future__ import annotations

import numpy as np
import torch

from .. import metrics
from ..fidelity import noise_calibration, rank_pass, reference, retention, sae_health, fidelity
from ..sae import FitResult, TopKSAE, encode_sparse, random_sae, reconstruct
from .fit import activation_arrays, sae_codes
from .inputs import StageInputs, sasrec_outputs

# The codes that stage 05 reads again are cached under these names (05's model ids): name in 04 -> folder
CODES_NAMES = {"alt": "sae_alt", "random": "random"}


def evaluate_all(cfg, ctx: StageInputs, fits: dict[str, FitResult]) -> dict[str, dict]:
    """SASRec and every fitted SAE (plus a random SAE of the main shape) on dev and test. SASRec's own ranks
    and test scores (`sasrec_outputs`), their top-k, the mean-user ablation and the bootstrap resamples of
    each split are computed once (`reference`) for every SAE's fidelity and the noise calibration; each
    SAE's split is ranked in one `rank_pass`; the train codes of the alt and random SAEs are cached for
    stage 05 (`sae_codes`)."""
    E = ctx.model.item_table().detach()
    h_mean = ctx.h["train"].mean(0, keepdim=True)
    out = {s: sasrec_outputs(cfg, ctx, s) for s in ("dev", "test")}
    ranks_h = {s: r.ranks for s, r in out.items()}
    ev = {"sasrec": {s: metrics.ranking_metrics(r) for s, r in ranks_h.items()}}
    ref = reference(E, ctx.h["test"], h_mean, ctx.inst["test"], ctx.mask, ranks=ranks_h["test"])
    w_dev = metrics.bootstrap_weights(len(ranks_h["dev"]))
    saes = {n: f.sae for n, f in fits.items()}
    saes["random"] = random_baseline(fits["main"].sae, ctx.h["train"])
    for name, sae in saes.items():
        recon = {s: reconstruct(sae, ctx.h[s]) for s in ("dev", "test")}
        ranked = {"dev": rank_pass(E, recon["dev"], ctx.inst["dev"], ctx.mask, k=None),
                  "test": rank_pass(E, recon["test"], ctx.inst["test"], ctx.mask, ref_h=ref.h)}
        row = {s: metrics.ranking_metrics(r.ranks) for s, r in ranked.items()}
        x_hat = recon["test"]
        if name == "main":  # stage 03 wrote its codes
            idx_train, val_train = activation_arrays(cfg, ctx, sae, ("train",))["train"][:2]
        elif name in CODES_NAMES:
            idx_train, val_train = sae_codes(cfg, ctx, sae, CODES_NAMES[name], ("train",))["train"][:2]
        else:
            idx_train, val_train = encode_sparse(sae, ctx.h["train"])[:2]
        active = None if sae.cfg.family == "topk" else torch.from_numpy(np.asarray(val_train) > 0)
        health, freq = sae_health(ctx.h["test"], x_hat, idx_train, sae.cfg.n_latents, active)
        row["health"] = health
        row["freq"] = freq
        row["fidelity"] = fidelity(E, ctx.h["test"], x_hat, h_mean, ctx.inst["test"], ctx.mask, ref=ref,
                                   sae=ranked["test"])
        # the same ratio on dev: how far apart can two splits be?
        dev = retention(ranks_h["dev"], ranked["dev"].ranks, weights=w_dev)
        row["fidelity"].update(retention_dev=dev["retention"], retention_dev_ci_low=dev["retention_ci_low"],
                               retention_dev_ci_high=dev["retention_ci_high"])
        if name == "main":
            row["fidelity"].update(noise_calibration(E, ctx.h["test"], x_hat, ctx.inst["test"], ctx.mask, seed=cfg.seed,
                                                     ranks_orig=ranks_h["test"], top_orig=ref.top))
        row["config"] = sae.cfg.to_dict()
        ev[name] = row
        del idx_train, val_train, active   # before the next SAE's codes: one set of train codes at a time
    return ev


def evaluation_summary(ev: dict, fits: dict[str, FitResult]) -> dict:
    """summary.json sections: recsae.dev/test (main SAE) and sae (health, fidelity, config, time)."""
    out = {"recsae": {"dev": ev["main"]["dev"], "test": ev["main"]["test"]}}
    sae_sec = {}
    for name, row in ev.items():
        if name == "sasrec":
            continue
        sae_sec[name] = {"health": row["health"], "fidelity": row["fidelity"], "config": row["config"],
                         "dev": row["dev"], "test": row["test"],
                         "seconds": fits[name].seconds if name in fits else 0.0,
                         "best_epoch": fits[name].best_epoch if name in fits else None}
    out["sae"] = sae_sec
    return out


def random_baseline(sae: TopKSAE, h_train: torch.Tensor) -> TopKSAE:
    """The random SAE of an SAE's shape: its initial weights (same seed), b_dec = the training mean of h_u."""
    return random_sae(sae.cfg, x_mean=h_train.mean(0))
