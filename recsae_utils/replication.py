"""Do the default SAE's latents come back with another seed? (stage 05, opt-in with cfg.ablations)

Two questions, matched one-to-one with `stability`:
- another SAE seed on the same h_u: decoder rows live in one space, so pairs are matched by decoder cosine;
- another SASRec seed (its own h_u, its own SAE): the spaces differ, so pairs are matched by the
  correlation of their activations on the same test instances.
For the pairs matched at the first threshold we also ask whether they mean the same thing: the overlap of
their top items and whether their offline labels name the same concept. Offline labels for every SAE (also
when the run's labeler is an LLM), so that the comparison is like with like.
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import progress, stability
from .cards import latent_cards, offline_label
from .dictionary import ConceptDictionary, build_dictionaries
from .models import load as load_model
from .stages import StageInputs, cached_hu, fit_stage, sasrec_key
from .sae import TopKSAE, encode_sparse
from .train import checkpoint_path

N_TOP = 20  # top items per latent compared between matched pairs


def top_items(d: ConceptDictionary, n: int = N_TOP) -> np.ndarray:
    """(m, n) item ids of each latent's top items by shrunk lift, -1 where a latent has fewer."""
    t = d.tables
    out = np.full((d.m, n), -1, dtype=np.int64)
    sizes = np.diff(t.ptr)
    rank = np.arange(len(t.item)) - np.repeat(t.ptr[:-1], sizes)
    keep = rank < n
    out[np.repeat(np.arange(d.m), sizes)[keep], rank[keep]] = t.item[keep]
    return out


def dictionary_concepts(d: ConceptDictionary, cards: list[dict]) -> tuple[np.ndarray, list[str]]:
    """Top items and offline label names of one dictionary (dead latents have no card and no label)."""
    names = [""] * d.m
    for c in cards:
        names[c["latent"]] = offline_label(c)["name"]
    return top_items(d), names


def sae_concepts(cfg, ctx: StageInputs, sae: TopKSAE) -> tuple[np.ndarray, list[str]]:
    """`dictionary_concepts` for one SAE's dictionary on the training instances, built as stage 05 builds its own."""
    idx, val = encode_sparse(sae, ctx.h["train"])
    d = build_dictionaries(idx, val, ctx.inst["train"].hist, ctx.ds.items, sae.cfg.n_latents, top_n=cfg.top_n,
                           item_pool=cfg.item_pool)
    return dictionary_concepts(d, latent_cards(d))


def other_sasrec(cfg, ctx: StageInputs, seed: int) -> StageInputs:
    """The stage inputs with seed `seed` of the run's base model (trained by stage 02) and its own cached h_u."""
    ckpt = checkpoint_path(cfg, seed)
    model = load_model(ckpt, ctx.ds)
    for p in model.parameters():
        p.requires_grad_(False)
    key = sasrec_key(ckpt, ctx.ds)
    h = cached_hu(model, ctx.inst, Path(cfg.run_dir) / "hu" / f"seed{seed}", key)
    return replace(ctx, model=model, h=h, sasrec_key=key)


def stability_section(cfg, ctx: StageInputs, main: TopKSAE, d_main: ConceptDictionary, cards_main: list[dict],
                      extra: int = 2) -> dict:
    """The `stability` section of summary.json: `extra` more SAE seeds on the same h_u, and the default SAE
    of every other SASRec seed in cfg.seeds, each against the run's default SAE (whose dictionary and cards
    stage 05 has already built)."""
    m, k, variant = cfg.sae_latents, cfg.sae_k, cfg.sae_variant
    top0, lab0 = dictionary_concepts(d_main, cards_main)
    out = {"thresholds": list(stability.THRESHOLDS), "n_top_items": N_TOP, "sae_seeds": {}, "sasrec_seeds": {}}
    for s in range(cfg.seed + 1, cfg.seed + 1 + extra):
        progress.step(f"stability: SAE seed {s} on the same h_u")
        sae = fit_stage(replace(cfg, seed=s), ctx, m, k, variant, progress=False, tag=f"_seed{s}").sae
        top, lab = sae_concepts(cfg, ctx, sae)
        match = stability.match_decoders(main.W_dec.detach().numpy(), sae.W_dec.detach().numpy())
        out["sae_seeds"][str(s)] = stability.summary(match, top0, top, lab0, lab)
    codes0 = encode_sparse(main, ctx.h["test"])
    for s in cfg.seeds[1:]:
        progress.step(f"stability: SASRec seed {s} (its own h_u and SAE)")
        other = other_sasrec(cfg, ctx, s)
        sae = fit_stage(cfg, other, m, k, variant, progress=False, tag=f"_sasrec{s}").sae
        top, lab = sae_concepts(cfg, other, sae)
        match = stability.match_activations(codes0, m, encode_sparse(sae, other.h["test"]), m)
        out["sasrec_seeds"][str(s)] = stability.summary(match, top0, top, lab0, lab)
    for kind in ("sae_seeds", "sasrec_seeds"):
        rows = list(out[kind].values())
        if rows:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a mean of NaNs (no pair matched) stays NaN
                out[f"{kind}_mean"] = {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}
    return _no_nan(out)


def _no_nan(x):
    """NaN (e.g. the overlap of matched pairs when none matched) as None: summary.json stays valid JSON."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    return None if isinstance(x, float) and np.isnan(x) else x


def stability_table(section: dict) -> "pd.DataFrame":
    """One row per compared SAE (notebook display)."""
    import pandas as pd

    rows = [{"compared with": f"{'SAE' if kind == 'sae_seeds' else 'SASRec'} seed {s}",
             "matched by": "decoder cosine" if kind == "sae_seeds" else "activation correlation", **r}
            for kind in ("sae_seeds", "sasrec_seeds") for s, r in section.get(kind, {}).items()]
    return pd.DataFrame(rows)
