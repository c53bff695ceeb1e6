"""Interventions on the SAE code of SASRec's user vector: edit latents, re-rank every item, measure.

An edit changes the code z of an instance and adds only the change to h_u (docs/metrics.md,
"Interventions"):  h' = h + sum_j (z'_j - z_j) W_dec[j].  The SAE's reconstruction error
h - x_hat stays in h', so a zero edit is exactly SASRec's own ranking, not the SAE's reconstruction.
Steering adds beta * median||h_u|| * W_dec[j] / ||W_dec[j]|| whether latent j fires or not: a latent's
typical activation is far smaller than ||h_u||, so doses are stated as a fraction of the median ||h_u||.

Because scores are linear in h, steering along a direction u by t adds t * (E u) to every score row: the
dose-response and calibration paths add one (n_items,) vector per unit to the unedited masked scores
instead of redoing h @ E^T, and loop over units in chunks. Every function takes a dictionary of
directions D (m, d), so SAE decoder rows, signed raw h_u dimensions (`signed_basis`) and a random SAE's
rows are measured the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from .metrics import BLOCK_ENTRIES, mask_known, ndcg_per_instance, ranks_from_scores, row_blocks

BETAS = (0.1, 0.25, 0.5, 1.0, 2.0)  # steering doses as a fraction of the median ||h_u||


# ---------------------------------------------------------------------------------------------------
# Arguments: every public function checks its own, so a bad one is a clear error, never a wrong table (a
# NaN dose ranked items by NaN scores, latent 1.5 became latent 1, k = -3 failed deep in torch)


def check_ids(ids, n: int, what: str) -> list[int]:
    """`ids` as ints in 0..n-1: a fraction (1.5), a non-number or an id out of range is a ValueError naming
    `what`; integral floats (3.0, as read from a table) are accepted."""
    a = np.asarray(ids).ravel()
    if a.dtype.kind in "iu":  # the common case, checked at once (rows and units run to thousands)
        if a.size and not (a.min() >= 0 and a.max() < n):
            j = int(a[(a < 0) | (a >= n)][0])
            raise ValueError(f"{what}: id {j} is outside 0..{n - 1}")
        return a.astype(np.int64).tolist()
    out = []
    for j in a.astype(object):
        integral = isinstance(j, (int, np.integer)) or (isinstance(j, (float, np.floating)) and float(j).is_integer())
        if isinstance(j, (bool, np.bool_)) or not integral:
            raise ValueError(f"{what}: {j!r} is not an integer id")
        if not 0 <= int(j) < n:
            raise ValueError(f"{what}: id {int(j)} is outside 0..{n - 1}")
        out.append(int(j))
    return out


def check_finite(values, what: str) -> list[float]:
    """`values` as floats, each finite: a NaN or infinite dose, factor or value is a ValueError naming `what`."""
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: {v!r} is not a number") from None
        if isinstance(v, (bool, np.bool_)) or not np.isfinite(f):
            raise ValueError(f"{what}: {v!r} is not a finite number")
        out.append(f)
    return out


def check_count(x, what: str, low: int = 1, high: int | None = None) -> int:
    """An integer in low..high (k, a sample size, a chunk), else a ValueError naming `what`."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or not low <= x <= (high if high is not None else x):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{what} must be an integer {bound}, got {x!r}")
    return int(x)


def _check_edit(edit: "Edit", m: int) -> None:
    check_ids(list(edit.set_to), m, "set_to latent")
    check_ids(list(edit.scale), m, "scale latent")
    check_ids(list(edit.ablate), m, "ablate latent")
    check_ids(list(edit.steer), m, "steer latent")
    check_ids(list(edit.add), m, "add latent")
    check_finite(list(edit.add.values()), "add value")
    check_finite(list(edit.set_to.values()), "set_to value")
    check_finite(list(edit.scale.values()), "scale factor")
    check_finite(list(edit.steer.values()), "steer dose (beta)")


# ---------------------------------------------------------------------------------------------------
# Edits and full ranking


@dataclass
class Edit:
    """Latent edits: set_to {j: value}, scale {j: factor}, ablate [j] (z_j -> 0) act on the code;
    steer {j: beta} adds beta * norm * the unit direction of W_dec[j] (norm = median ||h_u||); add {j: dz}
    raises z_j by dz whether it fires or not (code-space steering: h' = h + dz W_dec[j], rows as they are)."""

    set_to: dict[int, float] = field(default_factory=dict)
    scale: dict[int, float] = field(default_factory=dict)
    ablate: Sequence[int] = ()
    steer: dict[int, float] = field(default_factory=dict)
    add: dict[int, float] = field(default_factory=dict)


def edit_h(h: Tensor, z_idx: Tensor, z_val: Tensor, W_dec: Tensor, edit: Edit, norm: float = 1.0) -> Tensor:
    """h' = h + sum_j dz_j W_dec[j] (+ steering), for a batch h (B, d) with codes z_idx/z_val (B, k).
    All edited latents are handled at once: z'_j = a_j z_j + b_j (ablate a=b=0, scale a=f, set a=0 b=v)."""
    h = torch.as_tensor(h)
    W = torch.as_tensor(W_dec).to(h.dtype)
    _check_edit(edit, len(W))
    check_finite([norm], "norm")
    code = [int(j) for j in [*edit.set_to, *edit.scale, *edit.ablate]]
    if len(set(code)) != len(code):
        raise ValueError(f"a latent is edited twice in {edit}")
    out = h.clone()
    if code:
        lat = torch.tensor(code, dtype=torch.long)
        a = torch.tensor([0.0] * len(edit.set_to) + [float(f) for f in edit.scale.values()] + [0.0] * len(edit.ablate),
                         dtype=h.dtype)
        b = torch.tensor([float(v) for v in edit.set_to.values()] + [0.0] * (len(edit.scale) + len(edit.ablate)),
                         dtype=h.dtype)
        zi, zv = torch.as_tensor(z_idx).long(), torch.as_tensor(z_val).to(h.dtype)
        cur = ((zi[:, :, None] == lat) * zv[:, :, None]).sum(1)          # (B, n_edited) current z_j
        out = out + (cur * (a - 1) + b) @ W[lat]
    if edit.steer:
        s = torch.tensor([int(j) for j in edit.steer], dtype=torch.long)
        beta = torch.tensor([float(v) for v in edit.steer.values()], dtype=h.dtype)
        out = out + norm * (beta @ F.normalize(W[s], dim=1))
    if edit.add:
        j = torch.tensor([int(j) for j in edit.add], dtype=torch.long)
        out = out + torch.tensor([float(v) for v in edit.add.values()], dtype=h.dtype) @ W[j]
    return out


@dataclass
class Ranking:
    scores: Tensor        # (B, n_items) with the user's known items and padding at -inf
    top: Tensor           # (B, k) item ids, best first
    ranks: Tensor | None  # (B,) 1-based rank of the target (ties against it), if targets were given


def rank_all(item_emb: Tensor, h: Tensor, users: np.ndarray, mask: tuple, targets: np.ndarray | None = None,
             k: int = 10) -> Ranking:
    """Scores h @ E^T with ReChorus masking (metrics.mask_known), top-k items and target ranks."""
    check_count(k, "k", 1, len(item_emb) - 1)
    E = torch.as_tensor(item_emb).to(h.dtype)
    s = h @ E.T
    t = None if targets is None else s.gather(1, torch.as_tensor(np.asarray(targets), dtype=torch.long)[:, None])[:, 0]
    s = mask_known(s, np.asarray(users), *mask, inplace=True)
    return Ranking(s, s.topk(k, dim=1).indices, None if t is None else ranks_from_scores(s, t))


# ---------------------------------------------------------------------------------------------------
# The notebook call: recommend(ctx, user, steer={latent: beta})


@dataclass
class SteeringContext:
    """Everything an intervention needs about a set of held-out instances (one row each)."""

    E: Tensor                 # (n_items, d) SASRec's item table, row 0 = padding
    W_dec: Tensor             # (m, d) the SAE's decoder rows (unit norm for the plain SAE; sae/variants.py)
    h: Tensor                 # (n, d) h_u of the instances
    z_idx: Tensor             # (n, k) SAE code: latent ids
    z_val: Tensor             # (n, k) SAE code: activations (0 = inactive)
    users: np.ndarray         # (n,) user id
    targets: np.ndarray       # (n,) held-out target item
    mask: tuple               # (indptr, known) CSR of every user's known items
    h_norm: float             # median ||h_u||: the unit of steering doses
    items: pd.DataFrame | None = None
    concepts: dict | None = None  # concept name -> {latent: weight}: its steering latents (`concept_edit`)


def steering_context(item_emb: Tensor, sae, h: Tensor, users: np.ndarray, targets: np.ndarray, mask: tuple,
                     items: pd.DataFrame | None = None, concepts: dict | None = None) -> SteeringContext:
    """The arrays steering reads: the item embeddings, the SAE's decoder and codes of `h`, each row's user and
    target, the known-item mask. From a stage's inputs: `split_context`. `concepts`
    (concept name -> {latent: weight}, e.g. `yardstick.steering_latents`) lets `recommend` steer by a concept's name."""
    from .sae import encode_sparse

    h = torch.as_tensor(h).float()
    if not len(h) == len(users) == len(targets):
        raise ValueError(f"h, users and targets differ in length: {len(h)}, {len(users)}, {len(targets)}")
    zi, zv = encode_sparse(sae, h)
    return SteeringContext(torch.as_tensor(item_emb).detach().float().cpu(), sae.W_dec.detach().float().cpu(), h,
                           torch.from_numpy(zi).long(), torch.from_numpy(zv), np.asarray(users), np.asarray(targets),
                           mask, float(h.norm(dim=1).median()), items, concepts)


def concept_edit(ctx: SteeringContext, steer: dict) -> dict[int, float]:
    """{concept name: beta} -> the code-space edit {latent: dz} raising each concept's steering latents in
    proportion to their weights (a name is the concept's, "genre:Horror", or its value alone if that is
    unique, "Horror"), scaled so the decoded change has length beta * median ||h_u|| (the dose of
    a single latent steered by `steer`)."""
    names = sorted(ctx.concepts or {})
    out: dict[int, float] = {}
    for name, beta in steer.items():
        short = [n for n in names if n.split(":", 1)[-1].lower() == str(name).lower()]
        name = short[0] if name not in names and len(short) == 1 else name    # "Horror" = "genre:Horror"
        if name not in (ctx.concepts or {}):
            near = [n for n in names if str(name).lower() in n.lower()]
            raise ValueError(f"unknown concept {name!r}: this steering context has "
                             f"{', '.join(near or names) or 'no concepts (build it with concepts=...)'}")
        w = ctx.concepts[name]
        lat = torch.tensor(check_ids(list(w), len(ctx.W_dec), f"latent of {name!r}"), dtype=torch.long)
        wv = torch.tensor(check_finite(list(w.values()), f"weight of {name!r}"), dtype=ctx.W_dec.dtype)
        size = float((wv @ ctx.W_dec[lat]).norm())
        if size <= 0:
            raise ValueError(f"concept {name!r}: its steering latents decode to a zero change")
        b = check_finite([beta], f"steer dose (beta) of {name!r}")[0]
        for j, v in zip(lat.tolist(), wv.tolist()):
            out[j] = out.get(j, 0.0) + b * ctx.h_norm * v / size
    return out


def split_context(si, sae, split: str = "test", concepts: dict | None = None) -> SteeringContext:
    """`steering_context` over one split of a stage's inputs (stages.StageInputs), in one call."""
    inst = si.inst[split]
    return steering_context(si.model.item_table(), sae, si.h[split], inst.user, inst.item, si.mask, si.ds.items,
                            concepts)


def _item_text(items: pd.DataFrame | None, ids: np.ndarray, col: str) -> list:
    if items is None or col not in items.columns:
        return [None] * len(ids)
    s = items.set_index("item_id")[col].reindex(ids)
    return ["|".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v for v in s]


def recommend(ctx: SteeringContext, user: int, steer: dict | str | None = None, ablate: Sequence[int] = (),
              scale: dict[int, float] | None = None, set_to: dict[int, float] | None = None, k: int = 10,
              add: dict[int, float] | None = None) -> pd.DataFrame:
    """Top-k of the user's last held-out instance before and after the edit, side by side. `rank_before`
    is the after-item's rank in the unedited ranking (`change` > 0: it moved up). `steer`: {latent: beta},
    or a concept name ("genre:Horror", dose 1) or {name: beta}: the code-space edit raising the concept's
    steering latents (`concept_edit`); `add` {latent: dz} raises codes directly."""
    check_count(k, "k", 1, len(ctx.E) - 1)
    if isinstance(user, (bool, np.bool_)) or not isinstance(user, (int, np.integer)):
        raise ValueError(f"user must be an integer user id, got {user!r}")
    lo, hi = (int(ctx.users.min()), int(ctx.users.max())) if len(ctx.users) else (0, -1)
    rows = np.flatnonzero(ctx.users == user) if lo <= int(user) <= hi else np.zeros(0, np.int64)  # no int64 overflow
    if rows.size == 0:
        raise ValueError(f"user {user} has no instance in this steering context (its user ids lie in {lo}..{hi})")
    r = rows[-1:]
    steer = {steer: 1.0} if isinstance(steer, str) else dict(steer or {})
    by_name = {c: b for c, b in steer.items() if isinstance(c, str)}
    add = dict(add or {})
    for j, dz in concept_edit(ctx, by_name).items():
        add[j] = add.get(j, 0.0) + dz
    e = Edit(set_to or {}, scale or {}, ablate, {j: b for j, b in steer.items() if not isinstance(j, str)}, add)
    h1 = edit_h(ctx.h[r], ctx.z_idx[r], ctx.z_val[r], ctx.W_dec, e, ctx.h_norm)
    r0 = rank_all(ctx.E, ctx.h[r], ctx.users[r], ctx.mask, k=k)
    r1 = rank_all(ctx.E, h1, ctx.users[r], ctx.mask, k=k)
    before, after = r0.top[0].numpy(), r1.top[0].numpy()
    prev = 1 + (r0.scores[0][None, :] > r0.scores[0][after][:, None]).sum(1).numpy()
    return pd.DataFrame({"rank": np.arange(1, k + 1), "item_before": before,
                         "title_before": _item_text(ctx.items, before, "title"),
                         "genres_before": _item_text(ctx.items, before, "genres"),
                         "item_after": after, "title_after": _item_text(ctx.items, after, "title"),
                         "genres_after": _item_text(ctx.items, after, "genres"),
                         "rank_before": prev, "change": prev - np.arange(1, k + 1)})


# ---------------------------------------------------------------------------------------------------
# Dictionaries, labels, samples


def signed_basis(d: int) -> Tensor:
    """The raw-dimension dictionary: +e_i for unit i and -e_i for unit i + d (concepts' both_signs order)."""
    eye = torch.eye(d)
    return torch.cat([eye, -eye])


def item_sets(n_items: int, sets: Sequence[Sequence[int]]) -> np.ndarray:
    """(n_items, L) bool: column l marks the items of sets[l] (e.g. a latent's concept items)."""
    lens = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    out = np.zeros((n_items, len(sets)), dtype=bool)
    flat = np.asarray([j for s in sets for j in check_ids(s, n_items, "item id")], dtype=np.int64)  # -1 wrapped
    out[flat, np.repeat(np.arange(len(sets)), lens)] = True
    return out


def label_items(features, label_features: Sequence[Sequence[int]]) -> np.ndarray:
    """(n_items, L) bool: items carrying any feature of unit l's label. `features` is (n_items, F) 0/1
    (dense or scipy sparse, e.g. concepts' ItemFeatures.M); label_features[l] are feature columns."""
    sel = item_sets(features.shape[1], label_features).astype(np.float32)
    return np.asarray(sp.csr_matrix(features, dtype=np.float32) @ sel) > 0


def inactive_rows(z_idx, z_val, units: Sequence[int]) -> np.ndarray:
    """(n, L) bool: unit l does not fire on instance i (from a sparse code)."""
    zi, zv = np.asarray(z_idx), np.asarray(z_val)
    return ~((zi[:, :, None] == np.asarray(units)[None, None, :]) & (zv[:, :, None] > 0)).any(1)


# ---------------------------------------------------------------------------------------------------
# Dose-response and steerability


def _check(ctx: SteeringContext, rows: np.ndarray, n_units: int, inactive: np.ndarray, *item_tables) -> None:
    """Clear errors for mismatched shapes (a silent broadcast would give a wrong table)."""
    if np.shape(inactive) != (len(rows), n_units):
        raise ValueError(f"inactive has shape {np.shape(inactive)}, expected (rows, units) = {(len(rows), n_units)}")
    for t in item_tables:
        if t is not None and np.shape(t) != (len(ctx.E), n_units):
            raise ValueError(f"item table has shape {np.shape(t)}, expected (n_items, units) = {(len(ctx.E), n_units)}")


def _rows(ctx: SteeringContext, rows) -> np.ndarray:
    """Row indices of the context as an int64 array (each in range)."""
    return np.asarray(check_ids(rows, len(ctx.h), "row"), dtype=np.int64)


def _base(ctx: SteeringContext, rows: np.ndarray, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Masked unedited scores (N, n_items), top-k, unmasked target scores and target ranks of `rows`."""
    h, tg = ctx.h[rows], torch.as_tensor(ctx.targets[rows], dtype=torch.long)
    r = rank_all(ctx.E, h, ctx.users[rows], ctx.mask, ctx.targets[rows], k)
    return r.scores, r.top, (h * ctx.E[tg]).sum(1), r.ranks


def steered_topk(S0: Tensor, shift: Tensor, k: int, values: bool = False, buf: Tensor | None = None
             ) -> tuple[Tensor, Tensor]:
    """Scores S0 (N, n) + shift (..., n) broadcast to (..., N, n) and their top-k (..., N, k): the item ids,
    or (values, ids) when `values`. The scores keep the broadcast's own memory layout (a shift made from a
    transposed slice puts the unit dimension fastest), since sums along their rows round by it. With `buf`
    (flat, at least as large) the top-k runs on a row-contiguous copy of the scores written there: the
    same result, far faster than on strided rows."""
    s = S0 + shift[..., None, :]
    c = s
    if buf is not None and not s.is_contiguous():
        c = torch.add(S0, shift[..., None, :], out=buf[:s.numel()].view(s.shape))
    t = c.topk(k, dim=-1)
    return s, (tuple(t) if values else t.indices)


def logsumexp_(s: Tensor, top1: Tensor) -> Tensor:
    """torch.logsumexp(s, -1) step by step, reusing the row maxima the top-k already found (`top1`, the
    first top-k value, keepdim) and overwriting `s`: the same operations on the same shapes, one pass fewer
    and no second copy of the steered scores."""
    m = top1.masked_fill(top1.abs() == float("inf"), 0.0)
    return s.sub_(m).exp_().sum(-1).log_().add_(m[..., 0])


def _wmean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean of x (..., N, L) over N weighted by w (N, L); NaN where a unit has no instance."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * w).sum(-2) / w.sum(0)


def dose_response(ctx: SteeringContext, rows: np.ndarray, D: Tensor, units: Sequence[int], inactive: np.ndarray,
                  labels: np.ndarray, concepts: np.ndarray | None = None, betas: Sequence[float] = BETAS,
                  k: int = 10, chunk: int = 8, kl: bool = True) -> pd.DataFrame:
    """Steer every unit l (direction D[units[l]]) by beta * median||h_u|| on the sample `rows`, counting
    only the instances where it is inactive (`inactive` (N, L)). `labels`/`concepts` (n_items, L) bool mark
    each unit's label items and concept items. One row per (unit, beta): label/concept share of the top-k
    before and after, NDCG@k of the target before and after, catalog KL from the unedited ranking, and the
    share of the top-k replaced."""
    rows, units = _rows(ctx, rows), np.asarray(check_ids(units, len(D), "unit"), dtype=np.int64)
    check_finite(betas, "beta")
    check_count(chunk, "chunk")
    _check(ctx, rows, len(units), inactive, labels, concepts)
    S0, top0, t0, rank0 = _base(ctx, rows, k)
    P = ctx.E @ F.normalize(torch.as_tensor(D, dtype=torch.float32)[units], dim=1).T  # (n_items, L)
    Y = torch.as_tensor(labels, dtype=torch.float32)
    C = torch.as_tensor(concepts if concepts is not None else np.zeros_like(labels), dtype=torch.float32)
    tg = torch.as_tensor(ctx.targets[rows], dtype=torch.long)
    b = torch.tensor([float(x) for x in betas]) * ctx.h_norm
    w = np.asarray(inactive, dtype=np.float64)
    nd0 = ndcg_per_instance(rank0.numpy(), k)
    # KL(softmax(S0) || softmax(S0 + beta p)) = lse(S0 + beta p) - lse(S0) - beta <softmax(S0), p> per row:
    # one logsumexp of the steered scores instead of two softmaxes (masked items are -inf on both sides)
    lse0 = torch.logsumexp(S0, dim=1)                                     # (N,)
    pa_p = torch.softmax(S0, dim=1) @ P                                   # (N, L)
    out = []
    buf = torch.empty(len(b) * min(chunk, len(units)) * S0.numel(), dtype=S0.dtype)
    for c0 in range(0, len(units), chunk):
        ch = slice(c0, min(c0 + chunk, len(units)))
        Pc = P[:, ch].T                                                   # (Lc, n)
        s, (val, top) = steered_topk(S0, b[:, None, None] * Pc, k, values=True, buf=buf)  # (nb,Lc,N,n), (..,k)
        # rank = 1 + #(scores >= the target's): up to k it is read off the top-k values, since every score
        # outside them is <= the k-th; past k NDCG@k is 0 whatever the rank, so k + 1 stands for all of them
        thr = (t0 + b[:, None, None] * Pc[:, tg])[..., None]
        ranks = torch.where(val[..., -1:] >= thr, k + 1, 1 + (val >= thr).sum(-1, keepdim=True))[..., 0]
        kls = (logsumexp_(s, val[..., :1]) - lse0 - b[:, None, None] * pa_p[:, ch].T) if kl else None  # (nb, Lc, N)
        del s
        Yc, Cc = Y[:, ch].T, C[:, ch].T                                   # (Lc, n)
        share = lambda M, t: M.gather(1, t.reshape(len(M), -1)).view(t.shape).mean(-1)  # (Lc, N, k) -> (Lc, N)
        lab0, con0 = share(Yc, top0.expand(Yc.shape[0], -1, -1)), share(Cc, top0.expand(Cc.shape[0], -1, -1))
        wc = w[:, ch]
        vs = [torch.from_numpy(wc[:, j] > 0) for j in range(wc.shape[1])]
        before = [(int(v.sum()), float(lab0[j][v].mean()), float(con0[j][v].mean()), float(nd0[v.numpy()].mean()))
                  if v.any() else (0, np.nan, np.nan, np.nan) for j, v in enumerate(vs)]   # the same at every beta
        for i, beta in enumerate(betas):
            lab1, con1 = share(Yc, top[i]), share(Cc, top[i])
            kept = (top[i][..., :, None] == top0[..., None, :]).any(-1).float().mean(-1)  # (Lc, N)
            nd1 = ndcg_per_instance(ranks[i].numpy(), k)                  # (Lc, N)
            for j, u in enumerate(units[ch]):
                v, (n, lab_b, con_b, nd_b) = vs[j], before[j]
                out.append({"unit": int(u), "beta": float(beta), "n": n,
                            "label_before": lab_b, "label_after": float(lab1[j][v].mean()) if n else np.nan,
                            "concept_before": con_b, "concept_after": float(con1[j][v].mean()) if n else np.nan,
                            "ndcg_before": nd_b, "ndcg_after": float(nd1[j][v.numpy()].mean()) if n else np.nan,
                            "replaced": float(1 - kept[j][v].mean()) if n else np.nan,
                            "kl": float(kls[i, j][v].double().mean()) if kl and n else np.nan})
    df = pd.DataFrame(out).sort_values(["unit", "beta"], kind="stable").reset_index(drop=True)
    df["label_gain"] = df["label_after"] - df["label_before"]
    df["concept_gain"] = df["concept_after"] - df["concept_before"]
    return df


def random_units(d: int, n_random: int, seed: int) -> Tensor:
    """(n_random, d) the seeded random unit directions of the steerability null."""
    return F.normalize(torch.randn(n_random, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def random_kls(ctx: SteeringContext, rows: np.ndarray, n_random: int = 100, betas: Sequence[float] = BETAS,
               seed: int = 0, chunk: int = 10) -> np.ndarray:
    """(len(betas), n_random): mean catalogue KL over `rows` of each seeded random direction (`random_units`,
    as `random_tops` draws them) at each dose, KL = lse(S0 + t p) - lse(S0) - t <softmax(S0), p> per row."""
    S0 = _base(ctx, np.asarray(rows), 1)[0]
    P = ctx.E @ random_units(ctx.E.shape[1], n_random, seed).T            # (n_items, R)
    lse0, pa = torch.logsumexp(S0, 1), torch.softmax(S0, 1) @ P           # (N,), (N, R)
    out = np.zeros((len(betas), n_random))
    for i, b in enumerate(betas):
        t = float(b) * ctx.h_norm
        for c0 in range(0, n_random, chunk):
            c = slice(c0, min(c0 + chunk, n_random))
            s = S0[None] + t * P[:, c].T[:, None, :]                       # (Rc, N, n)
            out[i, c] = (torch.logsumexp(s, -1) - lse0 - t * pa[:, c].T).double().mean(1).numpy()
    return out


def random_tops(ctx: SteeringContext, rows: np.ndarray, n_random: int = 100, beta: float = 1.0, seed: int = 0,
                k: int = 10, chunk: int = 10) -> tuple[Tensor, Tensor]:
    """Top-k of `rows` unedited (N, k) and steered by `beta` along each of n_random seeded random unit
    directions (n_random, N, k). They do not depend on the model, so a stage ranks them once for all."""
    check_count(n_random, "n_random", 0)
    check_count(chunk, "chunk")
    check_finite([beta], "beta")
    S0, top0, _, _ = _base(ctx, _rows(ctx, rows), k)
    U = random_units(ctx.E.shape[1], n_random, seed)
    buf = torch.empty(min(chunk, n_random) * S0.numel(), dtype=S0.dtype)
    tops = [steered_topk(S0, beta * ctx.h_norm * (ctx.E @ U[c0:c0 + chunk].T).T, k, buf=buf)[1]
            for c0 in range(0, n_random, chunk)]
    return top0, (torch.cat(tops) if tops else torch.zeros((0, len(top0), k), dtype=torch.long))


def random_gains(ctx: SteeringContext, rows: np.ndarray, inactive: np.ndarray, labels: np.ndarray,
                 n_random: int = 100, beta: float = 1.0, seed: int = 0, k: int = 10, chunk: int = 10,
                 tops: tuple[Tensor, Tensor] | None = None) -> np.ndarray:
    """(n_random, L): label-share gain at `beta` of seeded random unit directions, for every unit's label
    on that unit's own inactive instances (the null distribution of `steerability`). `tops`: the
    `random_tops` of the same rows and arguments when the caller ranked them already."""
    rows = _rows(ctx, rows)
    check_count(n_random, "n_random", 0)
    check_count(chunk, "chunk")
    check_count(k, "k", 1, len(ctx.E) - 1)
    check_finite([beta], "beta")
    _check(ctx, rows, np.shape(labels)[1], inactive, labels)
    top0, tops = random_tops(ctx, rows, n_random, beta, seed, k, chunk) if tops is None else tops
    if tops.shape != (n_random, len(rows), k):
        raise ValueError(f"random tops have shape {tuple(tops.shape)}, expected {(n_random, len(rows), k)}")
    Y = sp.csr_matrix(np.asarray(labels, dtype=np.float32))
    w = np.asarray(inactive, dtype=np.float64)
    n = len(ctx.E)

    def shares(top: Tensor) -> np.ndarray:  # (..., N, k) item ids -> (..., N, L) label share, via a sparse one-hot
        t = top.reshape(-1, k).numpy()
        onehot = sp.csr_matrix((np.ones(t.size, np.float32), t.ravel(), np.arange(0, t.size + 1, k)), (len(t), n))
        return np.asarray((onehot @ Y).todense()).reshape(*top.shape[:-1], -1) / k

    before = shares(top0)                                                 # (N, L)
    out = [_wmean(shares(tops[c0:c0 + chunk]) - before, w) for c0 in range(0, n_random, chunk)]
    return np.concatenate(out) if out else np.zeros((0, np.shape(labels)[1]))


def steerability(dose: pd.DataFrame, rand: np.ndarray, units: Sequence[int], beta: float = 1.0,
                 q: float = 0.95) -> pd.DataFrame:
    """Per unit: label gain at `beta`, the q-quantile of the random directions' gains for its label
    (`random_gains`, columns in `units` order) and steerable = gain > that quantile."""
    check_finite([beta], "beta")
    if not 0 < q < 1:
        raise ValueError(f"q must lie strictly between 0 and 1, got {q!r}")
    at = dose[np.isclose(dose["beta"], beta)].set_index("unit")["label_gain"].reindex(np.asarray(units))
    thr = np.nanquantile(rand, q, axis=0)
    g = at.to_numpy()
    return pd.DataFrame({"unit": np.asarray(units), "gain": g, "random_q": thr,
                         "steerable": np.where(np.isnan(g), False, g > thr)})


def steerability_matched_kl(dose: pd.DataFrame, rand_gain: np.ndarray, rand_kl: np.ndarray, units: Sequence[int],
                            betas: Sequence[float] = BETAS, beta: float = 1.0, q: float = 0.95) -> pd.DataFrame:
    """`steerability` with the null drawn at matched disruption: each random direction is taken at the dose
    where its catalogue KL equals the unit's own KL at `beta` (log-log interpolation between the doses
    `betas`, KL ~ dose^2 below the smallest), its label gain interpolated there (in log dose; linear in the
    dose from 0 below the smallest; held at the largest dose's gain above it, counted in `beyond`).
    rand_gain: (len(betas), R, L) `random_gains` per dose; rand_kl: (len(betas), R) `random_kls`."""
    at = dose[np.isclose(dose["beta"], beta)].set_index("unit").reindex(np.asarray(units))
    g, kap = at["label_gain"].to_numpy(), at["kl"].to_numpy()
    lb = np.log(np.asarray(betas, dtype=np.float64))
    lk = np.log(np.clip(rand_kl, 1e-30, None))                            # (B, R), increasing in the dose
    x = np.log(np.where(np.isfinite(kap) & (kap > 0), kap, np.nan))
    L, (B, R) = len(g), lk.shape
    cols = np.arange(L)
    null, beyond = np.full((R, L), np.nan), np.zeros(L, bool)
    for r in range(R):                                                    # vectorised over units
        G = rand_gain[:, r, :]                                            # (B, L)
        lbs = np.interp(x, lk[:, r], lb)                                  # the dose of equal KL (clamped)
        j = np.clip(np.searchsorted(lb, lbs) - 1, 0, B - 2)
        w = (lbs - lb[j]) / (lb[j + 1] - lb[j])
        val = G[j, cols] * (1 - w) + G[j + 1, cols] * w
        below, above = x <= lk[0, r], x >= lk[-1, r]
        val = np.where(below, G[0] * np.exp((x - lk[0, r]) / 2), val)    # dose ratio = sqrt(KL ratio)
        val = np.where(above, G[-1], val)
        beyond |= above
        null[r] = np.where(np.isnan(x), np.nan, val)
    with np.errstate(all="ignore"):
        thr = np.nanquantile(null, q, axis=0) if R else np.full(L, np.nan)
    return pd.DataFrame({"unit": np.asarray(units), "gain": g, "kl": kap, "random_q_kl": thr, "beyond": beyond,
                         "steerable_kl": np.where(np.isnan(g) | np.isnan(thr), False, g > thr)})


# ---------------------------------------------------------------------------------------------------
# Ablation and de-biasing


def ablation(ctx: SteeringContext, units: Sequence[int], labels: np.ndarray, concepts: np.ndarray,
             max_rows: int = 200, seed: int = 0, k: int = 10, chunk: int = 2048) -> pd.DataFrame:
    """Zero each unit on (up to max_rows seeded) instances where it fires; count how many of its concept
    and label items leave the top-k. Control, on the same instance: zero instead the active latent at the
    next activation rank (the previous one for the last rank), counting the same unit's items."""
    units = check_ids(units, len(ctx.W_dec), "unit")
    check_count(max_rows, "max_rows")
    check_count(chunk, "chunk")
    check_count(k, "k", 1, len(ctx.E) - 1)
    rng = np.random.default_rng(seed)
    zi, zv = ctx.z_idx.numpy(), ctx.z_val.numpy()
    order = np.argsort(-zv, axis=1, kind="stable")
    zi, zv = np.take_along_axis(zi, order, 1), np.take_along_axis(zv, order, 1)
    n_act = (zv > 0).sum(1)
    pr, pu, pl, pc = [], [], [], []                                       # pair: row, unit col, slot, control slot
    for l, u in enumerate(units):
        r, slot = np.nonzero((zi == u) & (zv > 0) & (n_act[:, None] > 1))
        if len(r) > max_rows:
            keep = np.sort(rng.choice(len(r), max_rows, replace=False))
            r, slot = r[keep], slot[keep]
        pr.append(r), pu.append(np.full(len(r), l)), pl.append(slot)
        pc.append(np.where(slot + 1 < n_act[r], slot + 1, slot - 1))
    pr, pu, pl, pc = (np.concatenate(a).astype(np.int64) for a in (pr, pu, pl, pc))
    if not len(pr):
        return pd.DataFrame(columns=["unit", "n", "concept_in", "concept_left", "concept_left_control",
                                     "label_in", "label_left", "label_left_control"])
    Y, C = torch.as_tensor(labels).T, torch.as_tensor(concepts).T          # (L, n_items) bool
    res = np.zeros((len(pr), 6))
    for s in range(0, len(pr), chunk):
        r, u = pr[s:s + chunk], pu[s:s + chunk]
        i = np.arange(len(r))
        S0, top0, _, _ = _base(ctx, r, k)
        tops = [top0]
        for slot in (pl[s:s + chunk], pc[s:s + chunk]):
            dh = -torch.from_numpy(zv[r, slot])[:, None] * ctx.W_dec[torch.from_numpy(zi[r, slot]).long()]
            tops.append((S0 + dh @ ctx.E.T).topk(k, dim=1).indices)
        for c, M in enumerate((C, Y)):
            inb = M[torch.from_numpy(u)[:, None], top0]                   # (B, k) unit's items in the top-k
            for t, top in enumerate(tops[1:]):
                stay = (top0[:, :, None] == top[:, None, :]).any(-1)
                res[s + i, 3 * c + 1 + t] = (inb & ~stay).sum(1).numpy()
            res[s + i, 3 * c] = inb.sum(1).numpy()
    df = pd.DataFrame(res, columns=["concept_in", "concept_left", "concept_left_control",
                                    "label_in", "label_left", "label_left_control"])
    df["unit"] = np.asarray(units)[pu]
    g = df.groupby("unit", sort=False)
    return g.mean().assign(n=g.size()).reset_index()


def debias_curve(ctx: SteeringContext, latents: Sequence[int], item_pct: np.ndarray,
                 factors: Sequence[float] = (1.0, 0.5, 0.0, -0.5, -1.0), k: int = 10, max_rows: int = 0,
                 seed: int = 0, block: int = BLOCK_ENTRIES) -> pd.DataFrame:
    """Scale the given (popularity-flagged) latents by each factor on every instance, or on a seeded sample
    of `max_rows` (0 = all) (1 = unedited, 0 = suppressed, < 0 = reversed); mean popularity percentile of
    the top-k (`item_pct` per item id) against NDCG@k of the target and the share of the top-k replaced.
    Scores are built in row blocks of at most `block` entries and only each row's top-k and target rank are
    kept, so memory is bounded at any size and the curve does not depend on the block size."""
    latents = check_ids(latents, len(ctx.W_dec), "latent")
    factors = check_finite(factors, "factor")
    check_count(max_rows, "max_rows", 0)
    check_count(k, "k", 1, len(ctx.E) - 1)
    n = len(ctx.h)
    rows = np.arange(n) if not 0 < max_rows < n else \
        np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    blocks = [rows[b] for b in row_blocks(len(rows), ctx.E.shape[0], block)]

    def ranked(h: Tensor) -> tuple[Tensor, Tensor]:
        tops, ranks = [], []
        for b in blocks:
            r = rank_all(ctx.E, h[b], ctx.users[b], ctx.mask, ctx.targets[b], k)
            tops.append(r.top)
            ranks.append(r.ranks)
        return torch.cat(tops), torch.cat(ranks)

    top0, rank0 = ranked(ctx.h)
    pct = torch.as_tensor(np.asarray(item_pct, dtype=np.float64))
    out = []
    for f in factors:
        h1 = edit_h(ctx.h, ctx.z_idx, ctx.z_val, ctx.W_dec, Edit(scale={int(j): float(f) for j in latents}))
        # factor 1 (or no latent) leaves h bit for bit as it was: its ranking is the unedited one
        top, ranks = (top0, rank0) if torch.equal(h1, ctx.h) else ranked(h1)
        kept = (top[:, :, None] == top0[:, None, :]).any(-1).float().mean()
        out.append({"factor": float(f), "popularity_pct": float(pct[top].mean()),
                    f"ndcg@{k}": float(ndcg_per_instance(ranks.numpy(), k).mean()),
                    "replaced": float(1 - kept)})
    df = pd.DataFrame(out)
    df["ndcg_cost"] = float(ndcg_per_instance(rank0.numpy(), k).mean()) - df[f"ndcg@{k}"]
    return df


def steer_each(ctx: SteeringContext, row: int, latents: Sequence[int], beta: float = 1.0, k: int = 10,
               chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One instance's top-k before (k,) and after steering each latent alone by beta * median||h_u|| (L, k):
    the browser's per-latent example, one score row per latent in chunks."""
    lat = torch.as_tensor(np.asarray(check_ids(latents, len(ctx.W_dec), "latent"), dtype=np.int64))
    row = check_ids([row], len(ctx.h), "row")[0]
    check_finite([beta], "beta")
    check_count(chunk, "chunk")
    S0, top0, _, _ = _base(ctx, np.array([row]), k)
    after = []
    for c0 in range(0, len(lat), chunk):
        P = F.normalize(ctx.W_dec[lat[c0:c0 + chunk]], dim=1) @ ctx.E.T      # (Lc, n_items)
        after.append(steered_topk(S0, beta * ctx.h_norm * P, k)[1][:, 0])
    return top0[0].numpy(), (torch.cat(after).numpy() if after else np.zeros((0, k), dtype=np.int64))


def example_row(ctx: SteeringContext) -> int:
    """The instance the browser's cards and the steering card share: the first user's last (`recommend`'s)."""
    check_count(len(ctx.users), "instances in the steering context", 1)
    return int(np.flatnonzero(ctx.users == ctx.users[0])[-1])


def browser_examples(ctx: SteeringContext, latents: Sequence[int], row: int = 0, beta: float = 1.0,
                     k: int = 10) -> dict[int, dict]:
    """latent -> {user, beta, before, after} (item ids) for the concept browser's cards: every latent steered
    on the same instance (`row` of the context)."""
    before, after = steer_each(ctx, row, latents, beta, k)
    user = int(ctx.users[row])
    return {int(j): {"user": user, "beta": float(beta), "before": before.tolist(), "after": a.tolist()}
            for j, a in zip(latents, after)}
