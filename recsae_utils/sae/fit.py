"""The SAE's fit loop: Adam on shuffled minibatches, epoch selection on a dev score, resumable checkpoints."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm  # text bars: tqdm.auto warns in every kernel without ipywidgets

from .. import artifacts, ddp
from ..checkpoints import check_finite_loss, early_stop_now, flush_denormals, load_state, state_tensors
from ..metrics import BLOCK_ENTRIES
from ..progress import step as progress_step
from .io import save_sae
from .losses import batch_loss, sq_dev
from .model import SAEConfig, TopKSAE, make_sae
from .variants import fold, input_map


def scheduled_lr(cfg: SAEConfig, step: int, total: int) -> float:
    """lr of 0-based step `step` of `total`: constant, then linear to 0 over the last cfg.lr_decay of the steps."""
    if cfg.lr_decay <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (total - step) / max(1, round(cfg.lr_decay * total)))


@dataclass
class FitResult:
    """The fitted SAE (best epoch restored), one history row per epoch, the selected epoch, real seconds."""
    sae: TopKSAE
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Each epoch's shuffle depends only on (seed, epoch), so a resumed run replays it exactly."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def data_fingerprint(x: Tensor) -> str:
    """A short hash of x's bytes (no copy), so a checkpoint is resumed only on the data it was fitted to."""
    return hashlib.blake2b(memoryview(x.detach().cpu().contiguous().numpy()).cast("B"), digest_size=8).hexdigest()


def total_variance(x: Tensor, block: int = BLOCK_ENTRIES) -> float:
    """Sum of squared deviations from the mean in float64; past `block` entries in row blocks, so a large x
    gets no float64 copy (below `block`, one pass: the sums computed exactly as in one block)."""
    if x.numel() <= block:
        return float(((x.double() - x.double().mean(0)) ** 2).sum())
    parts = torch.split(x, max(1, block // x.shape[1]))
    mean = sum(p.double().sum(0) for p in parts) / len(x)
    return float(sum(((p.double() - mean) ** 2).sum() for p in parts))


@flush_denormals()
def fit_sae(x_train: Tensor, cfg: SAEConfig, select_fn: Callable[[TopKSAE], dict] | None = None,
            select_key: str = "NDCG@5", out_dir: str | Path | None = None, progress: bool = True,
            init_b_dec: bool = True, tie_se: float = 1.0, item_emb: Tensor | None = None) -> FitResult:
    """Fit on x_train (n, d_in) with Adam and shuffled minibatches; select the epoch with the best
    select_fn(sae)[select_key] (ReChorus: latest of the ties, early stop with patience cfg.early_stop),
    or the lowest train FVU without select_fn; restore it.

    init_b_dec (openai only; the reference keeps zeros): b_dec starts at the data MEAN, not the geometric
    median of Gao et al. The mean is the best constant under the squared error we minimise and is exact and
    cheap; the median's robustness to huge-norm outliers matters for LM residuals, not for h_u, which
    comes out of a LayerNorm. With out_dir, `sae_last.safetensors` (weights, Adam moments, best weights,
    history) is written each epoch and `sae.safetensors` (best) when it improves; a rerun with the same
    config and data resumes after the last finished epoch and ends bit-identical to an uninterrupted run
    (`epochs` is not part of that key unless lr_decay > 0, so a finished constant-lr run can be extended).

    lr_decay: the last fraction of all steps lowers lr linearly to 0: at a constant lr the weights still
    jitter at the end, and the decay settles them.

    Noise-aware selection: if select_fn also returns "per_instance" (the select_key metric of every dev
    instance) and "fvu", an epoch only beats the incumbent best when its paired gain exceeds `tie_se`
    standard errors of the per-instance difference; within that band the lower dev FVU wins. The dev
    metric of a good SAE moves by less than its own noise between epochs, so a plain argmax would pick an
    epoch by chance. Early stopping then counts its patience from the selected epoch: a dev metric flat
    within its noise while the FVU still falls is not a plateau (reports/benchmarks.md, SAE fit).

    FitResult.seconds is the fit's real time summed over every call that trained (kept in the checkpoint),
    not the time of the last call, which may only have reloaded a finished fit.

    Variants (cfg.loss / input / dense, variants.py): the SAE is trained on x = the variant's map of x_train
    (fitted on x_train; `item_emb`, SASRec's item table, for "score" and "kl"), and every SAE that leaves
    this function (to select_fn, to sae.safetensors, in the FitResult) is folded back to act on x_train's
    space; the resumable checkpoint keeps the training coordinates."""
    t0 = time.time()
    spent = 0.0  # seconds of earlier calls on this checkpoint
    if cfg.variant not in ("openai", "reference"):
        raise ValueError(f"unknown variant {cfg.variant!r}")
    if cfg.loss in ("score", "kl") and item_emb is None:
        raise ValueError(f"SAE loss {cfg.loss!r} needs SASRec's item table: fit_sae(..., item_emb=E)")
    imap = input_map(x_train, cfg.loss, cfg.input, cfg.dense, cfg.euclid, item_emb)
    x = (imap.to_x(x_train) if imap is not None else x_train).detach().float().contiguous()
    n, openai = len(x), cfg.variant == "openai"
    sae = make_sae(cfg).to(x.device)
    if cfg.loss == "kl":
        sae.score_table = item_emb.detach().float().to(x.device)
    if init_b_dec and openai:
        sae.b_dec.data.copy_(x.mean(0))
    opt = torch.optim.Adam([{"params": [sae.W_enc, sae.W_dec, sae.b_dec], "weight_decay": cfg.l2},
                            {"params": [sae.b_enc], "weight_decay": 0.0}], lr=cfg.lr, fused=True)
    total_var = total_variance(x)
    # without lr decay nothing depends on `epochs`, so a finished run can be extended; with it, the schedule does
    key = {k: v for k, v in cfg.to_dict().items() if k != "epochs" or cfg.lr_decay > 0}
    meta = {"sae": key, "n": n, "data": data_fingerprint(x) if out_dir else "", "init_b_dec": init_b_dec,
            "select": select_key if select_fn else "train_fvu", "tie_se": tie_se}
    history: list[dict] = []
    best_state = {k: v.clone() for k, v in sae.state_dict().items()}
    best_epoch, start = 0, 1
    best_per: np.ndarray | None = None  # per-instance selection metric of the best epoch (noise-aware rule)
    dead_prev: Tensor | None = None  # reference: latents not in any top-k during the previous epoch
    out = Path(out_dir) if out_dir else None
    resume = artifacts.load_resumable(out / "sae_last.safetensors", out / "sae.safetensors") if out else None
    if resume is not None:
        tensors, saved = resume[0]
        if saved.get("meta") == meta:  # another config or other data: start over
            load_state(sae, opt, tensors)
            best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
            if "dead_prev" in tensors:
                dead_prev = tensors["dead_prev"].bool()
            if "best_per_instance" in tensors:
                best_per = tensors["best_per_instance"].double().numpy()
            history, best_epoch, start = saved["history"], saved["best_epoch"], len(saved["history"]) + 1
            spent = saved.get("seconds", sum(r["seconds"] for r in history))  # older checkpoints: epochs only

    def score(row: dict) -> float:
        return row["dev"][select_key] if select_fn else -row["train_fvu"]

    def beats_best(row: dict, per: np.ndarray | None) -> bool:
        if per is None or best_per is None or not best_epoch:
            return crit[-1] == max(crit)  # ReChorus: the latest epoch equal to the best wins
        d = per - best_per
        tol = tie_se * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        gain = score(row) - score(history[best_epoch - 1])
        return gain > tol or (gain >= -tol and row["dev"]["fvu"] <= history[best_epoch - 1]["dev"]["fvu"])

    def stop_now() -> bool:
        """ReChorus's rule on the raw scores; under the noise-aware rule, patience counts from the epoch
        that rule last selected (a dev metric flat within its noise while the FVU falls is not a plateau)."""
        if best_per is not None:
            return len(history) - best_epoch > cfg.early_stop
        return early_stop_now(crit, cfg.early_stop)

    crit = [score(r) for r in history]
    done = bool(crit) and stop_now()
    n_batches = max(1, math.ceil(n / cfg.batch_size))
    total = cfg.epochs * n_batches
    trained = False
    step_loss = ddp.wrap(sae, batch_loss)  # under torchrun: DDP, gradients summed over the ranks
    den = sq_dev if ddp.rank_world()[1] == 1 else ddp.sq_dev
    for epoch in range(start, cfg.epochs + 1):
        if done:
            break
        te = time.time()
        perm = torch.randperm(n, generator=epoch_generator(cfg.seed, epoch)).to(x.device)
        if not openai:
            sae.normalize_decoder_()
        fired = torch.zeros(cfg.n_latents, dtype=torch.bool, device=x.device)
        sums = torch.zeros(3, dtype=torch.float64)  # loss * batches, squared error, aux
        bar = tqdm(torch.tensor_split(perm, n_batches), desc=f"sae epoch {epoch}", disable=not progress,
                   leave=False, mininterval=1.0)
        for i, bidx in enumerate(bar):  # near-equal batches: no tiny tail batch whose FVU denominator is ~0
            for g in opt.param_groups:
                g["lr"] = scheduled_lr(cfg, (epoch - 1) * n_batches + i, total)
            xb = x[ddp.shard(bidx, pad=False)[0]]  # this rank's rows (all on one process)
            if openai:
                dead = sae.since_fired >= cfg.dead_window
            else:
                dead = dead_prev if dead_prev is not None else torch.zeros_like(fired)
            loss, aux, vals, idx, x_hat = step_loss(xb, dead, den)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if openai:
                sae.project_decoder_grad_()
            opt.step()
            if cfg.family != "topk":
                sae.update_threshold_(vals)
            with torch.no_grad():
                if openai:
                    sae.normalize_decoder_()
                    hit = ddp.union(idx[vals > 0], cfg.n_latents)  # fired on any rank
                    sae.since_fired += len(bidx)
                    sae.since_fired[hit] = 0
                else:
                    hit = ddp.union(idx.reshape(-1), cfg.n_latents)  # reference: any top-k slot, even a zero one
                fired[hit] = True
                sums += torch.stack([loss.detach().double(), ((xb - x_hat) ** 2).sum().double(),
                                     aux.detach().double()]).cpu()
        sums = ddp.all_sum(sums)
        check_finite_loss(float(sums[0]) / n_batches, f"SAE fit ({cfg.n_latents} latents, k={cfg.k}, {cfg.variant})",
                          epoch, f"RECSAE_SAE_LR={cfg.lr:g}")
        if not openai:
            dead_prev = ~fired
        dead_now = (sae.since_fired >= cfg.dead_window) if openai else ~fired
        row = {"epoch": epoch, "loss": float(sums[0]) / n_batches, "train_fvu": float(sums[1]) / total_var,
               "aux": float(sums[2]) / n_batches, "dead": float(dead_now.double().mean()),
               "dead_epoch": float((~fired).double().mean()), "seconds": time.time() - te}
        per = None
        if select_fn:
            sae.eval()
            row["dev"] = dict(select_fn(fold(sae, imap)))
            per = row["dev"].pop("per_instance", None)
            per = None if per is None else np.asarray(per, dtype=np.float64)
            sae.train()
        history.append(row)
        crit.append(score(row))
        if beats_best(row, per):
            best_epoch, best_per = epoch, per
            best_state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
            if out:
                save_sae(out / "sae.safetensors", fold(sae, imap), {"best_epoch": epoch, "row": row})
        trained = True
        if out:
            tensors = {**state_tensors(sae, opt), **{f"best.{k}": v for k, v in best_state.items()}}
            if dead_prev is not None:
                tensors["dead_prev"] = dead_prev.to(torch.uint8)
            if best_per is not None:
                tensors["best_per_instance"] = torch.from_numpy(best_per)
            artifacts.save_weights(out / "sae_last.safetensors", tensors,
                                   {"meta": meta, "history": history, "best_epoch": best_epoch,
                                    "seconds": spent + time.time() - t0})
        line = (f"sae epoch {epoch:3d}/{cfg.epochs} loss {row['loss']:.4f} fvu {row['train_fvu']:.4f} "
                f"dead {row['dead']:.3f} score {crit[-1]:.4f} ({row['seconds']:.1f}s)")
        progress_step(f"SAE {cfg.n_latents} latents k={cfg.k} {cfg.variant}: {line}")
        if progress:
            tqdm.write(line)
        done = stop_now()
    sae.load_state_dict(best_state)
    sae = fold(sae, imap).eval()
    return FitResult(sae, history, best_epoch, spent + (time.time() - t0 if trained else 0.0))
