"""Stage 03: the SAE fits a run makes (`fit_plan`), each fitted or reused from its folder and selected on the
plugged-in dev NDCG@5, and the codes of a fitted SAE: the activation tables of every instance and the cached
train / held-out codes the later stages read again."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from .. import artifacts, metrics, progress
from ..sae import FitResult, SAEConfig, TopKSAE, encode_sparse, fit_sae, fvu_loss, load_sae, reconstruct
from ..sae.variants import variant_tag
from ..train import pick_device, rank_targets
from .inputs import StageInputs, user_rows


HELD = ("dev", "test")  # the held-out instances of stage 05, one array in this order


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
    A budget in samples (= optimiser steps at a fixed batch) trains every dataset equally long: a fixed
    number of epochs would leave a small dataset's SAE undertrained (reports/benchmarks.md, SAE fit)."""
    if cfg.sae_epochs > 0:
        return int(cfg.sae_epochs)
    return max(1, math.ceil(cfg.sae_samples / max(n_train, 1)))


def sae_config(cfg, d_in: int, n_train: int, n_latents: int, k: int, variant: str) -> SAEConfig:
    """The SAEConfig a run fits from its RunConfig (the benchmark uses it too, so both train the same SAE).
    The reference variant always keeps the ReLU on AuxK values, as the reference code does; the loss, input
    and background settings (sae/variants.py) apply to "openai" fits, the reference ones stay plain."""
    openai = variant == "openai"
    return SAEConfig(d_in=d_in, n_latents=n_latents, k=k, k_aux=d_in // 2, variant=variant, lr=cfg.sae_lr,
                     batch_size=cfg.sae_batch_size, epochs=sae_epochs(cfg, n_train),
                     dead_window=cfg.sae_dead_window, aux_coef=cfg.sae_aux_coef, lr_decay=cfg.sae_lr_decay,
                     l2=cfg.sae_l2, aux_relu=cfg.sae_aux_relu or variant == "reference", seed=cfg.seed,
                     family=cfg.sae_family if openai else "topk",
                     loss=cfg.sae_loss if openai else "mse", euclid=cfg.sae_euclid if openai else 0.0,
                     input=cfg.sae_input if openai else "raw", dense=cfg.sae_dense if openai else 0)


def fit_stage(cfg, ctx: StageInputs, n_latents: int, k: int, variant: str, progress: bool = True,
              tag: str = "") -> FitResult:
    """Fit (or reuse) one SAE on the cached train h_u; select on dev NDCG@5 of the plugged-in model, epochs
    within one paired standard error of the best counting as tied and the lower dev FVU winning among them.
    `tag` names the fit's folder apart (another seed, another SASRec's h_u).

    A general model (one vector per user) is fitted on its users' vectors, each equally often (`fit_rows`),
    not on the instances, which repeat a user's vector once per interaction and so weigh heavy users more."""
    x_train = fit_rows(ctx)
    scfg = sae_config(cfg, x_train.shape[1], len(x_train), n_latents, k, variant)
    family = ("" if scfg.family == "topk" else f"_{scfg.family}") + variant_tag(scfg)   # a variant: its own folder
    out = Path(cfg.run_dir) / "sae" / f"m{n_latents}_k{k}_{variant}{family}{tag}"
    done = out / "done.json"
    key = artifacts.config_hash([scfg.to_dict(), ctx.sasrec_key, "select NDCG@5, ties within 1 paired SE: lower dev FVU; patience from the selected epoch"]
                                + ([] if ctx.model.sequential else ["each user equally often"]))
    if done.exists() and artifacts.read_json(done).get("key") == key and (out / "sae.safetensors").exists():
        d = artifacts.read_json(done)
        try:
            return FitResult(load_sae(out / "sae.safetensors"), d["history"], d["best_epoch"], d["seconds"])
        except artifacts.CheckpointError as e:  # damaged: fit it again, from scratch
            progress.step(f"{e}; fitting it again")
            for f in out.glob("sae*.safetensors"):
                f.unlink()
    item_emb = ctx.model.item_table().detach()
    h_dev = ctx.h["dev"]

    def select(sae: TopKSAE) -> dict:
        x_hat = reconstruct(sae, h_dev)
        ndcg5 = metrics.ndcg_per_instance(rank_targets(item_emb, x_hat, ctx.inst["dev"], ctx.mask), 5)
        return {"NDCG@5": float(ndcg5.mean()), "fvu": float(fvu_loss(h_dev, x_hat)), "per_instance": ndcg5}

    x = x_train.to(pick_device(cfg.device))  # on a GPU the fit runs there; everything after it on CPU
    res = fit_sae(x, scfg, select_fn=select, select_key="NDCG@5", out_dir=out, progress=progress,
                  item_emb=item_emb.to(x.device))
    res.sae = res.sae.cpu()
    artifacts.write_json(done, {"key": key, "history": res.history, "best_epoch": res.best_epoch,
                                "seconds": res.seconds, "config": scfg.to_dict()})
    return res


def fit_rows(ctx: StageInputs) -> torch.Tensor:
    """The vectors an SAE is fitted on: every training instance's h_u for a sequential model. A general
    model's instances repeat their user's vector once per interaction, which would weigh heavy users more:
    its fit sees each user's vector (`user_rows`) equally often, the users tiled to about the number of
    training instances, so that epochs, the sample budget and the selection's cadence stay a sequential
    fit's (one pass over 6,032 ML-1M users is 6 steps: the sample budget would be about 1,080 epochs, each
    paying for its dev selection and checkpoint)."""
    if ctx.model.sequential:
        return ctx.h["train"]
    rows = user_rows(ctx.inst["train"])
    reps = max(1, round(len(ctx.h["train"]) / max(len(rows), 1)))
    return ctx.h["train"][torch.from_numpy(np.tile(rows, reps))]


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
    artifacts.write_json(out / "activations.json", activations_meta(sae, ctx))
    return paths


def activations_meta(sae: TopKSAE, ctx: StageInputs) -> dict:
    """What the activation tables are of: the SAE's config and weights, and SASRec's key (checkpoint and data)."""
    return {"sae": sae.cfg.to_dict(), "sasrec": ctx.sasrec_key, "weights": weights_key(sae, ctx.sasrec_key)}


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


def activation_arrays(cfg, ctx: StageInputs, sae: TopKSAE,
                      splits=("train", "dev", "test")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (indices, values)} from the activation tables written by stage 03 (written now if they are
    missing or belong to another SAE/SASRec)."""
    out = Path(cfg.run_dir) / "activations"
    meta = out / "activations.json"
    if not (meta.exists() and artifacts.read_json(meta) == activations_meta(sae, ctx)):
        write_activations(cfg, ctx, sae)
    return {s: load_activations(out / f"{s}.parquet")[:2] for s in splits}


def weights_key(sae: TopKSAE, sasrec_key: str) -> str:
    h = hashlib.sha256(sasrec_key.encode())
    for name, t in sorted(sae.state_dict().items()):
        h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def sae_codes(cfg, ctx: StageInputs, sae: TopKSAE, name: str,
              parts=("train", "held")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """An SAE's TopK codes (indices, values) of the train h_u ('train') and of the held-out h_u ('held': dev
    then test, encoded as one array), encoded once and cached in <run>/codes/<name>/, keyed by the SAE's
    weights and SASRec's checkpoint: stage 04 encodes the alt and random SAEs, stage 05 reads them back."""
    key = weights_key(sae, ctx.sasrec_key)
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
