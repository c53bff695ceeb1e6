"""RecSAE: the SAE (recsae_utils.sae) plugged into SASRec. The notebook stages 03-05 live here: SASRec's
h_u cached once per checkpoint, the SAE fits (selected on the plugged-in dev NDCG@5), the sparse
activation tables, and the evaluation: recommendation metrics with the reconstruction in place of h_u,
reconstruction health, and ranking-native fidelity (docs/metrics.md)."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import artifacts, metrics, progress
from .data import Dataset, Instances, content_hash
from .model import SASRec
from .sae import FitResult, SAEConfig, TopKSAE, encode_sparse, fit_sae, fvu_loss, load_sae, random_sae, reconstruct
from .train import pick_device, rank_targets, user_vectors


def _masked_scores(item_emb: torch.Tensor, h: torch.Tensor, inst: Instances, mask_csr) -> torch.Tensor:
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


SCORE_BLOCK = metrics.BLOCK_ENTRIES  # score entries per block of sasrec_outputs; instances x items grows as data squared


def _row_blocks(n: int, n_items: int) -> list[slice]:
    """Row blocks over which the (n, n_items) masked scores are built one at a time (one block up to ML-1M
    and Grocery's sizes, so their results are computed exactly as before)."""
    return metrics.row_blocks(n, n_items, SCORE_BLOCK)


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
    2.5-97.5% range. One draw is not enough: at the SAE's FVU on ML-1M single draws gave retention from
    0.989 to 0.996, i.e. the metric's own noise is as large as the gap being judged. SASRec's own ranks and
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


def log10_freq(freq: np.ndarray, n: int) -> np.ndarray:
    """log10 firing frequency with dead latents placed one decade below the smallest observable value."""
    return np.log10(np.where(freq > 0, freq, 0.1 / max(n, 1)))


# ---------------------------------------------------------------------------------------------------
# The notebook stages (03 fit, 04 evaluate): cached h_u, fits, activations, evaluation


@dataclass
class StageInputs:
    ds: Dataset
    inst: dict
    model: SASRec
    h: dict[str, torch.Tensor]     # h_u per split (train/dev/test), float32 (n, d)
    mask: tuple
    sasrec_key: str
    h_seconds: float
    train_rows: np.ndarray | None = None   # rows of the full training set kept by `dictionary_sample` (None = all)


def stage_inputs(cfg) -> StageInputs:
    """Dataset, instances, the frozen SASRec (first seed; trained if missing) and its h_u for every
    train/dev/test instance, computed once in batches and cached as .npy keyed by the checkpoint's content
    and the data's (`sasrec_key`, which every later cache of the run folder is keyed on too)."""
    from . import data, train

    ds = data.prepare(cfg)
    inst = data.build_instances(ds, cfg.history_max)
    first = replace(cfg, seeds=cfg.seeds[:1])
    run = train.run_seeds(first, ds, inst, progress=False)[cfg.seeds[0]]
    model = run["model"].cpu().eval()  # trained on the GPU when there is one; the later stages read it on CPU
    for p in model.parameters():
        p.requires_grad_(False)
    ckpt = Path(cfg.run_dir) / "sasrec" / f"seed{cfg.seeds[0]}" / "sasrec.safetensors"
    key = sasrec_key(ckpt, ds)
    t0 = time.time()
    h = cached_hu(model, inst, Path(cfg.run_dir) / "hu", key)
    return StageInputs(ds, inst, model, h, data.user_item_csr(ds), key, time.time() - t0)


def sasrec_key(ckpt: str | Path, ds: Dataset) -> str:
    """The key of everything computed from a SASRec checkpoint (h_u, SAE fits, codes, rankings): the file's
    content and the data's, since h_u are these weights applied to these instances."""
    return artifacts.config_hash([artifacts.file_sha256(ckpt), content_hash(ds)])


def cached_hu(model: SASRec, inst: dict, out: Path, key: str) -> dict[str, torch.Tensor]:
    """h_u of every train/dev/test instance under `model`, cached as .npy in `out` keyed by its checkpoint."""
    h = {}
    meta = out / "hu.json"
    fresh = meta.exists() and artifacts.read_json(meta).get("sasrec") == key
    for s in ("train", "dev", "test"):
        f = out / f"{s}.npy"
        if fresh and f.exists():
            h[s] = torch.from_numpy(np.load(f))
        else:
            h[s] = user_vectors(model, inst[s], batch_size=4096, progress=True)
            artifacts.write_npy(f, h[s].numpy())
    artifacts.write_json(meta, {"sasrec": key, "shapes": {s: list(v.shape) for s, v in h.items()}})
    return h


def fit_plan(cfg) -> dict[str, tuple[int, int, str]]:
    """The SAEs a run fits: name -> (latents, k, variant). The other training variant at the default size
    is an ablation (cfg.ablations): it costs more than the rest of stage 03 and no headline needs it."""
    plan = {"main": (cfg.sae_latents, cfg.sae_k, cfg.sae_variant),
            "alt": (cfg.sae_alt_latents, cfg.sae_alt_k, cfg.sae_variant)}
    if cfg.ablations:
        other = "reference" if cfg.sae_variant != "reference" else "openai"
        plan[other] = (cfg.sae_latents, cfg.sae_k, other)
    return plan


def sae_epochs(cfg, n_train: int) -> int:
    """Epochs of an SAE fit: cfg.sae_epochs if set, else enough to show it cfg.sae_samples training vectors.
    A budget in samples (= optimiser steps at a fixed batch) trains every dataset equally long: at 12 epochs
    Grocery's 107,211 vectors gave 1,260 steps and test FVU .069; at 61 epochs (the same 6.5M samples as
    ML-1M) FVU .046 and NDCG@10 retention .988 instead of .967."""
    if cfg.sae_epochs > 0:
        return int(cfg.sae_epochs)
    return max(1, math.ceil(cfg.sae_samples / max(n_train, 1)))


def sae_config(cfg, d_in: int, n_train: int, n_latents: int, k: int, variant: str) -> SAEConfig:
    """The SAEConfig a run fits from its RunConfig (the benchmark uses it too, so both train the same SAE).
    The reference variant always keeps the ReLU on AuxK values, as the reference code does."""
    return SAEConfig(d_in=d_in, n_latents=n_latents, k=k, k_aux=d_in // 2, variant=variant, lr=cfg.sae_lr,
                     batch_size=cfg.sae_batch_size, epochs=sae_epochs(cfg, n_train),
                     dead_window=cfg.sae_dead_window, aux_coef=cfg.sae_aux_coef, lr_decay=cfg.sae_lr_decay,
                     l2=cfg.sae_l2, aux_relu=cfg.sae_aux_relu or variant == "reference", seed=cfg.seed,
                     family=cfg.sae_family if variant == "openai" else "topk")


def fit_stage(cfg, ctx: StageInputs, n_latents: int, k: int, variant: str, progress: bool = True,
              tag: str = "") -> FitResult:
    """Fit (or reuse) one SAE on the cached train h_u; select on dev NDCG@5 of the plugged-in model, epochs
    within one paired standard error of the best counting as tied and the lower dev FVU winning among them.
    `tag` names the fit's folder apart (another seed, another SASRec's h_u)."""
    scfg = sae_config(cfg, ctx.h["train"].shape[1], len(ctx.h["train"]), n_latents, k, variant)
    family = "" if scfg.family == "topk" else f"_{scfg.family}"
    out = Path(cfg.run_dir) / "sae" / f"m{n_latents}_k{k}_{variant}{family}{tag}"
    done = out / "done.json"
    key = artifacts.config_hash([scfg.to_dict(), ctx.sasrec_key, "select NDCG@5, ties within 1 paired SE: lower dev FVU; patience from the selected epoch"])
    if done.exists() and artifacts.read_json(done).get("key") == key and (out / "sae.safetensors").exists():
        d = artifacts.read_json(done)
        try:
            return FitResult(load_sae(out / "sae.safetensors"), d["history"], d["best_epoch"], d["seconds"])
        except artifacts.CheckpointError as e:  # damaged: fit it again, from scratch
            progress.step(f"{e}; fitting it again")
            for f in out.glob("sae*.safetensors"):
                f.unlink()
    item_emb = ctx.model.item_emb.weight.detach()
    h_dev = ctx.h["dev"]

    def select(sae: TopKSAE) -> dict:
        x_hat = reconstruct(sae, h_dev)
        ndcg5 = metrics.ndcg_per_instance(rank_targets(item_emb, x_hat, ctx.inst["dev"], ctx.mask), 5)
        return {"NDCG@5": float(ndcg5.mean()), "fvu": float(fvu_loss(h_dev, x_hat)), "per_instance": ndcg5}

    x = ctx.h["train"].to(pick_device(cfg.device))  # on a GPU the fit runs there; everything after it on CPU
    res = fit_sae(x, scfg, select_fn=select, select_key="NDCG@5", out_dir=out, progress=progress)
    res.sae = res.sae.cpu()
    artifacts.write_json(done, {"key": key, "history": res.history, "best_epoch": res.best_epoch,
                                "seconds": res.seconds, "config": scfg.to_dict()})
    return res


def write_activations(cfg, ctx: StageInputs, sae: TopKSAE) -> dict[str, Path]:
    """Sparse activations of every instance: one parquet per split with columns instance, user_id,
    position, item_id (the target), latents (k ids), values (k activations), sorted by value. The code
    columns are fixed-size lists built straight from the (n, k) arrays: no Python object per instance."""
    import pyarrow as pa

    out = Path(cfg.run_dir) / "activations"
    paths = {}
    for s in ("train", "dev", "test"):
        idx, val = encode_sparse(sae, ctx.h[s])   # each row already sorted by value, largest first
        inst = ctx.inst[s]
        k = idx.shape[1]
        flat = (pa.array(idx.astype(np.int32, copy=False).ravel()), pa.array(val.astype(np.float32, copy=False).ravel()))
        table = pa.table({"instance": np.arange(len(inst)), "user_id": inst.user, "position": inst.position,
                          "item_id": inst.item, "latents": pa.FixedSizeListArray.from_arrays(flat[0], k),
                          "values": pa.FixedSizeListArray.from_arrays(flat[1], k)})
        paths[s] = artifacts.write_parquet(out / f"{s}.parquet", table)
        del idx, val, flat, table
    artifacts.write_json(out / "activations.json", _activations_meta(sae, ctx))
    return paths


def _activations_meta(sae: TopKSAE, ctx: StageInputs) -> dict:
    """What the activation tables are of: the SAE's config and weights, and SASRec's key (checkpoint and data)."""
    return {"sae": sae.cfg.to_dict(), "sasrec": ctx.sasrec_key, "weights": _weights_key(sae, ctx.sasrec_key)}


def load_activations(path: str | Path) -> tuple[np.ndarray, np.ndarray, "pd.DataFrame"]:
    """(indices (n, k) int32, values (n, k) float32, keys DataFrame[instance, user_id, position, item_id]),
    the code columns read as flat arrays (list or fixed-size list columns alike)."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    n = t.num_rows

    def codes(col: str, dtype) -> np.ndarray:
        flat = t.column(col).combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        return flat.reshape(n, len(flat) // n if n else 0)

    idx, val = codes("latents", np.int32), codes("values", np.float32)
    return idx, val, t.drop(["latents", "values"]).to_pandas()


# The codes that stage 05 reads again are cached under these names (05's model ids): name in 04 -> folder
CODES_NAMES = {"alt": "sae_alt", "random": "random"}


def evaluate_all(cfg, ctx: StageInputs, fits: dict[str, FitResult]) -> dict[str, dict]:
    """SASRec and every fitted SAE (plus a random SAE of the main shape) on dev and test. SASRec's own ranks
    and test scores (`sasrec_outputs`), their top-k, the mean-user ablation and the bootstrap resamples of
    each split are computed once (`reference`) for every SAE's fidelity and the noise calibration; each
    SAE's split is ranked in one `rank_pass`; the train codes of the alt and random SAEs are cached for
    stage 05 (`sae_codes`)."""
    E = ctx.model.item_emb.weight.detach()
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
        health, freq = sae_health(ctx.h["test"], x_hat, torch.from_numpy(idx_train), sae.cfg.n_latents, active)
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


def plot_fit_curves(fits: dict[str, FitResult]):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
    for name, f in fits.items():
        ep = [r["epoch"] for r in f.history]
        axes[0].plot(ep, [r["dev"]["fvu"] for r in f.history], label=name)
        axes[1].plot(ep, [r["dev"]["NDCG@5"] for r in f.history], label=name)
    axes[0].set(xlabel="epoch", ylabel="dev FVU", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="dev NDCG@5 (plugged in)")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # epochs are whole numbers
    axes[1].legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_firing_histogram(ev: dict):
    """log10 firing frequency per latent; latents that never fired sit in their own bin, left of a gap,
    labelled 'never fired' with their count per SAE."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.5, 2.6))
    rows = {n: r for n, r in ev.items() if n != "sasrec"}
    live = np.concatenate([np.log10(np.asarray(r["freq"])[np.asarray(r["freq"]) > 0]) for r in rows.values()]
                          or [np.zeros(0)])
    bins = np.linspace(float(live.min()) if live.size else -6.0, 0.0, 40)
    dead_x = float(bins[0]) - 1.0                       # one decade left of the smallest observed frequency
    for i, (name, row) in enumerate(rows.items()):
        f = np.asarray(row["freq"])
        never = int((f <= 0).sum())
        line = ax.hist(np.log10(f[f > 0]), bins=bins, histtype="step", linewidth=1.2,
                       label=f"{name} ({never} never fired)" if never else name)[2][0]
        if never:
            ax.bar(dead_x, never, width=0.35, color=line.get_edgecolor(), alpha=0.8, align="center")
    ticks = [t for t in ax.get_xticks() if bins[0] <= t <= 0]
    ax.set_xticks([dead_x] + ticks, ["never\nfired"] + [f"{t:g}" for t in ticks])
    ax.axvline(dead_x + 0.5, color="0.6", linestyle=":", linewidth=1)
    ax.set(xlabel="log10 firing frequency (train)", ylabel="latents")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_metrics_across_k(ev: dict):
    """Left: test NDCG@K of SASRec and of each SAE plugged in. Right: each SAE's test HR@K and NDCG@K as a
    ratio to SASRec's (1 = unchanged), where a gap of a few percent is visible that the left panel hides."""
    import matplotlib.pyplot as plt

    from .metrics import TOPK

    names = [n for n in ("main", "reference", "alt", "random") if n in ev]
    label = {"main": "RecSAE (default SAE)"} | {n: f"RecSAE ({n})" for n in names if n != "main"}
    color = {n: f"C{i + 1}" for i, n in enumerate(names)}
    fig, (ax_a, ax_r) = plt.subplots(1, 2, figsize=(7, 2.8))
    base = ev["sasrec"]["test"]
    ax_a.plot(TOPK, [base[f"NDCG@{k}"] for k in TOPK], color="C0", marker="o", markersize=7, linewidth=2.5,
              alpha=0.5, label="SASRec")
    for n in names:
        ax_a.plot(TOPK, [ev[n]["test"][f"NDCG@{k}"] for k in TOPK], color=color[n], marker=".", linewidth=1,
                  label=label[n])
        for m, ls in (("NDCG", "-"), ("HR", "--")):
            ax_r.plot(TOPK, [ev[n]["test"][f"{m}@{k}"] / base[f"{m}@{k}"] for k in TOPK], color=color[n],
                      linestyle=ls, marker="o" if m == "NDCG" else "s", markersize=3, gid=f"{n}:{m}")
    ax_r.axhline(1.0, color="0.4", linestyle=":", linewidth=1, gid="parity")
    ax_a.set(xlabel="K", ylabel="test NDCG@K", xticks=list(TOPK))
    ax_r.set(xlabel="K", ylabel="RecSAE / SASRec (test)", xticks=list(TOPK))
    from matplotlib.lines import Line2D
    handles = ax_a.get_legend_handles_labels()[0] + [Line2D([], [], color="0.3", linestyle="-", label="NDCG@K ratio"),
                                                     Line2D([], [], color="0.3", linestyle="--", label="HR@K ratio")]
    fig.legend(handles=handles, loc="lower center", ncols=3, frameon=False, fontsize=7)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def activation_arrays(cfg, ctx: StageInputs, sae: TopKSAE,
                      splits=("train", "dev", "test")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (indices, values)} from the activation tables written by stage 03 (written now if they are
    missing or belong to another SAE/SASRec)."""
    out = Path(cfg.run_dir) / "activations"
    meta = out / "activations.json"
    if not (meta.exists() and artifacts.read_json(meta) == _activations_meta(sae, ctx)):
        write_activations(cfg, ctx, sae)
    return {s: load_activations(out / f"{s}.parquet")[:2] for s in splits}


def dictionary_sample(cfg, ctx: StageInputs, acts: dict) -> tuple[StageInputs, dict]:
    """The training instances behind the concept dictionaries (stages 05 and 06): all of them, or past
    `cfg.dict_rows` a seeded uniform sample (sorted, so each user's windows keep their order), applied
    alike to h_u, the instances and the default SAE's train codes. Counts, lifts and enrichments are rates
    over instances, so a million rows estimate them closely, and the stage's memory stops growing with the
    training set. Call it after the SAE fits are loaded: their keys and epochs count the full set."""
    n = len(ctx.inst["train"])
    if cfg.dict_rows <= 0 or n <= cfg.dict_rows:
        return ctx, acts
    rows = np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.dict_rows, replace=False))
    progress.step(f"concept dictionaries: a sample of {cfg.dict_rows:,} of {n:,} training instances (dict_rows)")
    inst = {**ctx.inst, "train": ctx.inst["train"].subset(rows)}
    h = {**ctx.h, "train": ctx.h["train"][torch.from_numpy(rows)]}
    if "train" in acts:
        acts = {**acts, "train": tuple(np.asarray(a)[rows] for a in acts["train"])}
    return replace(ctx, inst=inst, h=h, train_rows=rows), acts


# ---------------------------------------------------------------------------------------------------
# Computed once, cached in the run folder for the later stages (separate processes)

HELD = ("dev", "test")  # the held-out instances of stage 05, one array in this order


def random_baseline(sae: TopKSAE, h_train: torch.Tensor) -> TopKSAE:
    """The random SAE of an SAE's shape: its initial weights (same seed), b_dec = the training mean of h_u."""
    return random_sae(sae.cfg, x_mean=h_train.mean(0))


@dataclass
class SASRecOutputs:
    ranks: np.ndarray                   # 1-based full-ranking rank of each target, known items masked
    top1: np.ndarray                    # SASRec's top recommendation per instance, known items masked


def sasrec_outputs(cfg, ctx: StageInputs, split: str) -> SASRecOutputs:
    """SASRec's own ranking of one split, computed once per checkpoint: ranks and top-1 items cached in
    <run>/sasrec_outputs/ (keyed by the checkpoint) for stages 04 and 05."""
    E = ctx.model.item_emb.weight.detach()
    out = Path(cfg.run_dir) / "sasrec_outputs"
    meta, f_ranks, f_top1 = out / f"{split}.json", out / f"{split}_ranks.npy", out / f"{split}_top1.npy"
    if meta.exists() and artifacts.read_json(meta).get("sasrec") == ctx.sasrec_key and f_ranks.exists() \
            and f_top1.exists():
        return SASRecOutputs(np.load(f_ranks), np.load(f_top1))
    ranks = rank_targets(E, ctx.h[split], ctx.inst[split], ctx.mask)
    h, inst = ctx.h[split], ctx.inst[split]
    top1 = np.concatenate([_masked_scores(E, h[b], inst.subset(b), ctx.mask).argmax(1).numpy()
                           for b in _row_blocks(len(inst), E.shape[0])] or [np.zeros(0, np.int64)])
    artifacts.write_npy(f_ranks, ranks)
    artifacts.write_npy(f_top1, top1)
    artifacts.write_json(meta, {"sasrec": ctx.sasrec_key, "n": int(len(ranks))})
    return SASRecOutputs(ranks, top1)


def _weights_key(sae: TopKSAE, sasrec_key: str) -> str:
    h = hashlib.sha256(sasrec_key.encode())
    for name, t in sorted(sae.state_dict().items()):
        h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def sae_codes(cfg, ctx: StageInputs, sae: TopKSAE, name: str,
              parts=("train", "held")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """An SAE's TopK codes (indices, values) of the train h_u ('train') and of the held-out h_u ('held': dev
    then test, encoded as one array), encoded once and cached in <run>/codes/<name>/, keyed by the SAE's
    weights and SASRec's checkpoint: stage 04 encodes the alt and random SAEs, stage 05 reads them back."""
    key = _weights_key(sae, ctx.sasrec_key)
    if ctx.train_rows is not None:  # a dictionary sample's codes are cached apart from the full set's
        key += "-" + hashlib.sha256(ctx.train_rows.tobytes()).hexdigest()[:8]
    out = Path(cfg.run_dir) / "codes" / name
    meta_path = out / "codes.json"
    meta = artifacts.read_json(meta_path) if meta_path.exists() else {}
    if meta.get("key") != key:
        meta = {"key": key, "parts": []}
    res = {}
    for p in parts:
        fi, fv = out / f"{p}_idx.npy", out / f"{p}_val.npy"
        if p in meta["parts"] and fi.exists() and fv.exists():
            res[p] = (np.load(fi), np.load(fv))
            continue
        if p not in ("train", "held"):
            raise ValueError(f"sae_codes: unknown part {p!r} (train or held)")
        x = ctx.h["train"] if p == "train" else torch.cat([ctx.h[s] for s in HELD])
        res[p] = encode_sparse(sae, x)
        artifacts.write_npy(fi, res[p][0])
        artifacts.write_npy(fv, res[p][1])
        meta["parts"] = sorted(set(meta["parts"]) | {p})
        artifacts.write_json(meta_path, meta)
    return res
