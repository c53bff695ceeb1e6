"""Concepts of a user, an item and a recommendation: a user's strongest latents (their latest instance), an
item's latents by total strength over the training sequences holding it, and each recommended item's score
split into latent contributions. Plain arrays in, small DataFrames out; labels are any {latent: name}.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .dictionary import ConceptDictionary, activation_csr, label_array, incidence
from .specificity import GROUPS, RULE, Specificity, head_shares
from .specificity import order as specific_order


def label_names(labels: pd.DataFrame) -> dict[int, str]:
    """{latent: name} from a labels table (`labeling.label_latents`), empty names for missing ones."""
    return dict(zip(labels["latent"].astype(int), labels["name"].fillna("").astype(str)))


# ----------------------------------------------------------------------------------------------------
# Per-instance and per-item concepts


def instance_concepts(idx: np.ndarray, val: np.ndarray, labels=None, top: int = 5,
                      m: int | None = None, spec: Specificity | None = None) -> pd.DataFrame:
    """Each instance's `top` strongest active latents: DataFrame(instance, rank, latent, activation, label).
    With `spec`: its top specific latents first (`specificity.order`), then up to `top` background
    (generic) latents; `rank` counts within the `group` column ('specific' | 'background') and `key` is the
    ranking key (`Specificity.score`)."""
    idx, val = np.atleast_2d(idx), np.atleast_2d(val).astype(np.float64)
    m = m or int(idx.max()) + 1
    if spec is not None:
        ok = val > 0
        inst = np.nonzero(ok)[0]
        o, rank, bg = specific_order([inst], idx[ok], val[ok], spec)
        sel = rank <= top
        lat = idx[ok][o][sel]
        v = val[ok][o][sel]
        return pd.DataFrame({"instance": inst[o][sel], "rank": rank[sel], "latent": lat,
                             "activation": v, "key": spec.score(lat, v), "label": label_array(labels, m)[lat],
                             "group": np.array(GROUPS, dtype=object)[bg[sel].astype(int)]})
    top = min(top, idx.shape[1])
    o = np.lexsort((idx, -val), axis=1)[:, :top]
    li, lv = np.take_along_axis(idx, o, 1), np.take_along_axis(val, o, 1)
    ok = lv > 0
    inst, rank = np.nonzero(ok)
    lat = li[ok]
    return pd.DataFrame({"instance": inst, "rank": rank + 1, "latent": lat, "activation": lv[ok],
                         "label": label_array(labels, m)[lat]})


def item_latent_strength(idx: np.ndarray, val: np.ndarray, hist: np.ndarray, n_items: int,
                         m: int | None = None) -> sp.csr_matrix:
    """(n_items, m) total activation strength: sum of latent j's activation over ALL sequences whose
    history holds item i (one sparse product X^T A)."""
    idx, val = np.asarray(idx), np.asarray(val, dtype=np.float64)
    m = m or int(idx.max()) + 1
    n, k = idx.shape
    keep = val.ravel() > 0
    A = sp.csr_matrix((val.ravel()[keep], (np.repeat(np.arange(n), k)[keep], idx.ravel()[keep])), shape=(n, m))
    X = incidence(hist, n_items)
    return (X.T.tocsr().astype(np.float64) @ A).tocsr()


def item_concepts(idx: np.ndarray, val: np.ndarray, hist: np.ndarray, n_items: int, labels=None,
                  top: int = 5, m: int | None = None, spec: Specificity | None = None,
                  strength: sp.csr_matrix | None = None) -> pd.DataFrame:
    """Each item's top concepts by total activation strength over the sequences that contain it:
    DataFrame(item_id, rank, latent, strength, share, label); share = strength / item's total.
    With `spec`: the top specific concepts first, then up to `top` background ones (`rank` within the
    `group` column, `key` the ranking key). `strength`: a precomputed `item_latent_strength` (it is the costly part)."""
    m = m or int(np.asarray(idx).max()) + 1
    S = (item_latent_strength(idx, val, hist, n_items, m) if strength is None else strength).tocoo()
    item, lat, s = S.row.astype(np.int64), S.col.astype(np.int64), S.data
    if spec is not None:
        tot = np.bincount(item, weights=s, minlength=n_items)
        o, rank, bg = specific_order([item], lat, s, spec)
        keep = rank <= top
        it, lt, st = item[o][keep], lat[o][keep], s[o][keep]
        out = pd.DataFrame({"item_id": it, "rank": rank[keep], "latent": lt, "strength": st, "share": st / tot[it],
                            "key": spec.score(lt, st), "label": label_array(labels, m)[lt],
                            "group": np.array(GROUPS, dtype=object)[bg[keep].astype(int)]})
        out.attrs["top"] = top
        return out
    order = np.lexsort((lat, -s, item))
    item, lat, s = item[order], lat[order], s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(item)) + 1]
    rank = np.arange(len(item)) - np.repeat(starts, np.diff(np.r_[starts, len(item)]))
    tot = np.bincount(item, weights=s, minlength=n_items)
    keep = rank < top
    out = pd.DataFrame({"item_id": item[keep], "rank": rank[keep] + 1, "latent": lat[keep],
                        "strength": s[keep], "share": s[keep] / tot[item[keep]],
                        "label": label_array(labels, m)[lat[keep]]})
    out.attrs["top"] = top  # a caller may take the top few ranks of it instead of computing it again
    return out



# ----------------------------------------------------------------------------------------------------
# Explanations of recommendations


def explain_recommendations(z_idx: np.ndarray, z_val: np.ndarray, W_dec: np.ndarray, b_dec: np.ndarray,
                            E: np.ndarray, items: pd.DataFrame | None = None, top: int = 10, labels=None,
                            mask: np.ndarray | None = None, instances: np.ndarray | None = None,
                            spec: Specificity | None = None) -> pd.DataFrame:
    """Split each recommended item's reconstructed score x_hat . E_i into latent contributions
    z_j (W_dec[j] . E_i) plus the bias term b_dec . E_i; they add up exactly (float64) to the score.

    z_idx/z_val: (k,) for one instance or (B, k). Items ranked by x_hat . E_i, padding (column 0) and
    `mask` (B, n_items) True entries excluded. Returns DataFrame(instance, rank, item_id, title, score,
    latent, contribution, label): one row per active latent (largest contribution first) and one bias
    row (latent -1) per recommended item. With `spec`, a `group` column ('specific', 'background',
    'bias') and each item's rows in that order, specific ones by `Specificity.score` of the contribution:
    only the order changes, every row stays, so the groups still add up to the score."""
    zi, zv = np.atleast_2d(z_idx), np.atleast_2d(z_val).astype(np.float64)
    W = np.asarray(W_dec, dtype=np.float64)
    b = np.asarray(b_dec, dtype=np.float64)
    Em = np.asarray(E, dtype=np.float64)
    B, k = zi.shape
    m, n_items = W.shape[0], Em.shape[0]
    xhat = np.einsum("bk,bkd->bd", zv, W[zi]) + b
    scores = xhat @ Em.T
    scores[:, 0] = -np.inf
    if mask is not None:
        scores = np.where(np.atleast_2d(mask), -np.inf, scores)
    top = min(top, n_items - 1)
    part = np.argpartition(-scores, top - 1, axis=1)[:, :top]
    ps = np.take_along_axis(scores, part, 1)
    o = np.lexsort((part, -ps), axis=1)
    rec = np.take_along_axis(part, o, 1)                                 # (B, top)
    rec_score = np.take_along_axis(ps, o, 1)
    contrib = zv[:, None, :] * np.einsum("bkd,btd->btk", W[zi], Em[rec])  # (B, top, k)
    bias = Em[rec] @ b                                                   # (B, top)
    lab = np.append(label_array(labels, m), "bias (b_dec)")
    title = np.array([f"item {i}" for i in range(n_items)], dtype=object)
    if items is not None and "title" in items.columns:
        ids = items["item_id"].to_numpy()
        ok = ids < n_items
        t = items["title"].to_numpy(dtype=object)[ok]
        title[ids[ok]] = np.where(pd.isna(t), title[ids[ok]], t)
    inst_ids = np.arange(B) if instances is None else np.asarray(instances)
    bb, tt, kk = np.meshgrid(np.arange(B), np.arange(top), np.arange(k + 1), indexing="ij")
    lat_all = np.concatenate([zi[:, None, :].repeat(top, 1), np.full((B, top, 1), -1)], 2)
    con_all = np.concatenate([contrib, bias[..., None]], 2)
    active = np.concatenate([(zv > 0)[:, None, :].repeat(top, 1), np.ones((B, top, 1), bool)], 2)
    sel = active.ravel()
    bb, tt, lat, con = bb.ravel()[sel], tt.ravel()[sel], lat_all.ravel()[sel], con_all.ravel()[sel]
    is_bias = lat < 0
    if spec is None:
        grp, key = is_bias.astype(np.int64), con
    else:
        lj = np.where(is_bias, 0, lat)
        grp = np.where(is_bias, 2, spec.generic[lj].astype(np.int64))
        key = np.where(is_bias, 0.0, spec.score(lj, con))
    o = np.lexsort((lat, -key, grp, tt, bb))  # bias row last
    bb, tt, lat, con, is_bias, grp = bb[o], tt[o], lat[o], con[o], is_bias[o], grp[o]
    item = rec[bb, tt]
    out = pd.DataFrame({"instance": inst_ids[bb], "rank": tt + 1, "item_id": item, "title": title[item],
                        "score": rec_score[bb, tt], "latent": lat, "contribution": con,
                        "label": lab[np.where(is_bias, m, lat)]})
    if spec is not None:
        out["group"] = np.array([*GROUPS, "bias"], dtype=object)[grp]
    return out


def render_explanations(df: pd.DataFrame, n_reasons: int = 3, specific_first: bool = True) -> list[str]:
    """One line per recommended item: 'recommended Gladiator (2000) because of: action epics (+0.81), ...'
    (the bias row is not a reason). With a `group` column (`explain_recommendations(spec=...)`) and
    specific_first: the first n_reasons specific concepts in the table's order, then the background group
    summed ('background: 20 generic concepts (+4.10)'); else the n_reasons largest contributions."""
    keys = ["instance", "rank"]
    heads = df[["instance", "rank", "title"]].drop_duplicates(keys).sort_values(keys)
    if specific_first and "group" in df.columns:
        spec = df[df["group"] == "specific"].groupby(keys, sort=False).head(n_reasons)
        spec = spec.assign(txt=[f"{lb} ({c:+.2f})" for lb, c in zip(spec["label"], spec["contribution"])])
        bg = df[df["group"] == "background"].groupby(keys)["contribution"].agg(["size", "sum"])
        reasons = spec.groupby(keys)["txt"].agg(", ".join)
        out = []
        for inst, rank, title in heads.itertuples(index=False):
            parts = [reasons.get((inst, rank), "")]
            if (inst, rank) in bg.index:
                n, tot = bg.loc[(inst, rank)]
                parts.append(f"background: {int(n)} generic concepts ({tot:+.2f})")
            r = "; ".join(p for p in parts if p)
            out.append(f"recommended {title} because of: {r or 'the bias term only'}")
        return out
    lat = df[df["latent"] >= 0].sort_values(keys + ["contribution"], ascending=[True, True, False])
    lat = lat.groupby(keys, sort=False).head(n_reasons)
    reasons = lat.assign(txt=[f"{lb} ({c:+.2f})" for lb, c in zip(lat["label"], lat["contribution"])]) \
        .groupby(keys)["txt"].agg(", ".join)
    out = []
    for inst, rank, title in heads.itertuples(index=False):
        r = reasons.get((inst, rank), "")
        out.append(f"recommended {title} because of: {r or 'the bias term only'}")
    return out



# ----------------------------------------------------------------------------------------------------
# Views of one run (stage 05): a user's and a movie's concepts, example explanations, browser look-ups


def profile_views(d: ConceptDictionary, names: dict, acts: dict, ctx, item_table: pd.DataFrame, user: int = 36,
                  movie_title: str = "Wonder Boys (2000)", top: int = 10,
                  spec: Specificity | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A user's concepts (their latest instance: test, else dev, else train) and a movie's concepts (its rows
    of `item_table`, the `item_concepts` of the training sequences, computed once per run). Falls back to the
    last training user / the most popular item when the named ones are absent (tiny data, Grocery).
    With `spec` the user's specific concepts come first and generic ones form a background group (build
    `item_table` with the same `spec`)."""
    row = None
    for s in ("test", "dev", "train"):
        hit = np.flatnonzero(ctx.inst[s].user == user)
        if hit.size:
            row = (s, hit[-1])
            break
    if row is None:
        row = ("train", len(ctx.inst["train"]) - 1)
        user = int(ctx.inst["train"].user[-1])
    s, r = row
    uv = instance_concepts(acts[s][0][r:r + 1], acts[s][1][r:r + 1], names, top=top, m=d.m, spec=spec)
    uv.insert(0, "user", user)
    uv.insert(1, "split", s)
    items = ctx.ds.items
    if "title" in items.columns and (items["title"] == movie_title).any():
        item = int(items.loc[items["title"] == movie_title, "item_id"].iloc[0])
    else:
        item = int(items.sort_values("popularity", ascending=False)["item_id"].iloc[0])
    mv = _top_ranks(item_table, top)
    mv = mv[mv["item_id"] == item].copy()
    mv.insert(1, "title", str(d.display[item]))
    return uv.reset_index(drop=True), mv.reset_index(drop=True)


def _top_ranks(item_table: pd.DataFrame, top: int) -> pd.DataFrame:
    """The rows of an `item_concepts` table with rank <= top (the table must have been built with >= top)."""
    if item_table.attrs.get("top", top) < top:
        raise ValueError(f"item_table holds the top {item_table.attrs['top']} concepts per item, {top} asked")
    return item_table[item_table["rank"] <= top].reset_index(drop=True)


def example_explanations(names: dict, acts: dict, ctx, sae_model, n: int = 2, top: int = 10,
                         spec: Specificity | None = None) -> pd.DataFrame:
    """Explain the top-10 recommendations of `n` test instances (the first test instances of distinct
    users), with the user's known items masked as in evaluation (specific concepts first with `spec`)."""
    import torch

    from .metrics import mask_known

    inst = ctx.inst["test"]
    _, first = np.unique(inst.user, return_index=True)
    rows = np.sort(first)[:n]
    E = ctx.model.item_table().detach()
    mask = torch.isinf(mask_known(torch.zeros(len(rows), E.shape[0]), inst.user[rows], *ctx.mask)).numpy()
    return explain_recommendations(acts["test"][0][rows], acts["test"][1][rows], sae_model.W_dec.detach().numpy(),
                                   sae_model.b_dec.detach().numpy(), E.numpy(), ctx.ds.items, top=top,
                                   labels=names, mask=mask, instances=rows, spec=spec)


def lookup_tables(m: int, names: dict, acts: dict, ctx, item_table: pd.DataFrame,
                  top: int = 5, spec: Specificity | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the concept browser: every user's top latents (their latest instance, test > dev > train) and
    every item's top concepts by total strength over training sequences (from `item_table`); with `spec`,
    specific concepts first and a background group (build `item_table` with the same `spec`)."""
    frames = []
    for s, last, users in _latest_instances(ctx):
        df = instance_concepts(acts[s][0][last], acts[s][1][last], names, top=top, m=m, spec=spec)
        df.insert(0, "user", users[df["instance"].to_numpy()])
        df.insert(1, "split", s)
        frames.append(df)
    return pd.concat(frames, ignore_index=True), _top_ranks(item_table, top)


def _latest_instances(ctx) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each user's latest instance (test > dev > train): (split, its rows there, their users) per split."""
    out = []
    seen = np.zeros(ctx.ds.n_users, bool)
    for s in ("test", "dev", "train"):
        users = ctx.inst[s].user
        last = len(users) - 1 - np.unique(users[::-1], return_index=True)[1]  # latest instance per user
        last = last[~seen[users[last]]]
        seen[users[last]] = True
        out.append((s, last, users[last]))
    return out


def specificity_summary(spec: Specificity, acts: dict, ctx, strength: sp.csr_matrix, expl: pd.DataFrame,
                        top: int = 5) -> dict:
    """The summary.json 'specificity' section: the share of generic latents among the first `top` concepts
    shown, before (largest value first) and after (`specificity.order`), for every user's latest instance,
    every item (`strength` = `item_latent_strength` of the training sequences) and the explained
    recommendations `expl` (made with `spec`); with the share of the positive activation / strength /
    contribution those `top` carry."""
    views = {}
    parts = []
    for s, last, users in _latest_instances(ctx):
        idx, val = acts[s][0][last], acts[s][1][last]
        ok = val > 0
        parts.append((users[np.nonzero(ok)[0]], idx[ok], val[ok]))
    views["user"] = [np.concatenate(x) for x in zip(*parts)]
    S = strength.tocoo()
    views["movie"] = [S.row, S.col, S.data]
    lat = expl[expl["latent"] >= 0]
    key = lat["instance"].to_numpy(np.int64) * (int(lat["rank"].max()) + 1) + lat["rank"].to_numpy(np.int64)
    views["explanation"] = [key, lat["latent"].to_numpy(), lat["contribution"].to_numpy()]
    out = {"rule": RULE, "top": top}
    for view, (k, j, v) in views.items():
        before, after = head_shares(k, j, v, spec.generic, None, top), head_shares(k, j, v, spec.generic, spec, top)
        out[view] = {"n": int(len(np.unique(k))), "before": before[0], "after": after[0],
                     "value_share_before": before[1], "value_share_after": after[1]}
    return out


def judge_probes(d: ConceptDictionary, idx: np.ndarray, val: np.ndarray, hist: np.ndarray, top1: np.ndarray,
                 seed: int = 0, n_pos: int = 5, n_neg: int = 5, max_titles: int = 9) -> list[dict]:
    """RecSAE simulation probes on held-out (test) instances (codes idx/val, histories hist): each live
    latent's top activating instances and random non-activating ones; the 'last item' is SASRec's top-1
    recommendation `top1` (`stages.sasrec_outputs`)."""
    rng = np.random.default_rng(seed)
    fires = activation_csr(idx, val, d.m).T.tocsr()  # (m, n)
    n = len(hist)
    probes = []
    for j in d.live.tolist():
        a, b = fires.indptr[j], fires.indptr[j + 1]
        rows, v = fires.indices[a:b], fires.data[a:b]
        pos = rows[np.argsort(-v, kind="stable")[:n_pos]]
        pool = np.setdiff1d(np.arange(n), rows)
        neg = rng.choice(pool, size=min(n_neg, len(pool)), replace=False) if len(pool) else np.array([], int)
        for r, is_pos in [(r, True) for r in pos] + [(r, False) for r in neg]:
            hh = hist[r, :max_titles]
            hh = hh[hh > 0][::-1]
            probes.append({"latent": j, "history_titles": [str(x) for x in d.display[hh]],
                           "last_item": str(d.display[top1[r]]), "activating": bool(is_pos)})
    return probes
