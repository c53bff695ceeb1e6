"""The arrays behind the steering playground page, so the page can redo the edit itself.

The page (browser_assets/playground.js) recomputes `interventions.recommend` for a steering edit: it adds
dose * median||h_u|| * W_dec[j] / ||W_dec[j]|| to h_u, scores every item with the item table, masks the
user's known items and column 0, and ranks. For a typed history it first runs SASRec's forward pass
(`model.SASRec.states`, slot 0) on the item table, positional table and transformer blocks. So it needs:
the item table and the decoder rows (float16), the doses' unit (median ||h_u|| of the context), a sample of
users with their h_u (float16) and their known items (the ReChorus mask), and SASRec's small weights
(float32). Large arrays travel as base64 inside the playground page's gzip payload
(`browser.write_browser` writes that page, steering_playground.html, beside the concept browser).

Float16 is the only difference from Python: on the same float16-rounded arrays the page's top 10 equals
`interventions.recommend`'s (tests/test_browser.py checks it in Chromium).
"""
from __future__ import annotations

import base64

import numpy as np
import torch

from .interventions import SteeringContext, check_count
from .models import RecModel, SASRec

MAX_USERS = 1000   # users the playground can pick by id (a seeded sample; the page's 3 MB budget decides it)


def b64(a: np.ndarray, dtype: str) -> str:
    """The array's bytes, little-endian `dtype` ('<f2', '<f4', '<u2', '<u4'), as base64 text."""
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype)).tobytes()).decode("ascii")


def half(x) -> np.ndarray:
    """`x` rounded to float16, as float32: exactly what the page decodes."""
    return np.asarray(torch.as_tensor(x).detach().float().cpu(), dtype=np.float32).astype(np.float16).astype(np.float32)


def pick_users(users: np.ndarray, max_users: int = MAX_USERS, seed: int = 0) -> np.ndarray:
    """Sorted distinct user ids of the context: all of them when they fit, else a seeded sample."""
    ids = np.unique(np.asarray(users, dtype=np.int64))
    check_count(max_users, "max_users", 1)
    if len(ids) <= max_users:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, max_users, replace=False))


def sasrec_weights(model: SASRec) -> dict:
    """SASRec's weights the page's forward pass needs besides the item table: positions and blocks (float32)."""
    cfg = model.cfg
    blocks = []
    for blk in model.blocks:
        blocks.append({name: b64(p.detach().float().cpu().numpy(), "<f4")
                       for name, p in blk.named_parameters()})   # q/k/v/ff1/ff2 .weight (out, in) and .bias, ln1/ln2
    return {"L": cfg.history_max, "heads": cfg.n_heads, "d": cfg.d_model,
            "pos": b64(model.pos_emb.weight.detach().float().cpu().numpy(), "<f4"), "blocks": blocks}


def playground_data(ctx: SteeringContext, model: RecModel | None = None, users=None,
                    max_users: int = MAX_USERS, seed: int = 0) -> dict:
    """The page's playground block: item table, decoder, dose unit, users (each one's last instance in the
    context, as `interventions.recommend` takes it) with h_u and known items, and SASRec's weights (typed
    histories; None or another base model leaves that part out). users: ids to offer (None = a seeded sample of `max_users`)."""
    E, W = ctx.E.numpy(), ctx.W_dec.numpy()
    if E.shape[1] != W.shape[1]:
        raise ValueError(f"item table width {E.shape[1]} differs from the decoder's {W.shape[1]}")
    ids = pick_users(ctx.users, max_users, seed) if users is None else np.unique(np.asarray(users, dtype=np.int64))
    missing = np.setdiff1d(ids, ctx.users)
    if len(missing):
        raise ValueError(f"users {missing[:5].tolist()} have no instance in the steering context")
    # each user's last row in the context (what recommend() steers)
    last = {int(u): r for r, u in enumerate(ctx.users.tolist())}
    rows = np.array([last[int(u)] for u in ids], dtype=np.int64)
    indptr, known = ctx.mask
    counts = (indptr[ids + 1] - indptr[ids]).astype(np.int64)
    seen = [np.sort(known[indptr[u]:indptr[u + 1]]) for u in ids]
    # sorted known items as gaps from the previous one (small numbers: gzip packs them well)
    gaps = np.concatenate([np.diff(s, prepend=0) for s in seen]) if seen else np.zeros(0, np.int64)
    wide = len(E) > 65535
    out = {"n_items": len(E), "d": E.shape[1], "m": len(W), "h_norm": float(ctx.h_norm),
           "E": b64(E, "<f2"), "W": b64(W, "<f2"), "users": ids.tolist(),
           "H": b64(ctx.h[rows].numpy(), "<f2"), "counts": b64(counts, "<u4" if wide else "<u2"),
           "gaps": b64(gaps, "<u4" if wide else "<u2"), "wide": int(wide), "n_users_all": int(len(np.unique(ctx.users)))}
    if isinstance(model, SASRec):  # the page runs SASRec's forward pass only; another model: no typed histories
        if model.item_table().shape != ctx.E.shape:
            raise ValueError(f"SASRec's item table {tuple(model.item_table().shape)} is not the context's {tuple(ctx.E.shape)}")
        out["sasrec"] = sasrec_weights(model)
    return out
