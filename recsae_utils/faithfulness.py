"""Do explanations name what drives a recommendation? A deletion test and a semantic check
(docs/yardstick.md).

For each held-out instance, its recommendation (the top item of the SAE's reconstructed scores, as
`explain.explain_recommendations` ranks them) is explained by its specific concepts in the order a reader
sees them. Deleting the three concepts cited first (their code set to 0, the SAE's reconstruction error
kept, so h' = h - sum_j z_j W_dec[j]) should push the item down SASRec's own ranking more than deleting three
other active specific latents of matched activation; deleting the three largest contributions, generic ones
included, is the upper reference. Semantic agreement: the share of explanations whose first cited concept's
label shares a genre (a category on Grocery) with the recommended item, against a seeded shuffle of which
item goes with which explanation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .explain import explain_recommendations
from .metrics import mask_known
from .specificity import Specificity

N_CITED = 3


def cited_latents(expl: pd.DataFrame, n: int = N_CITED) -> dict[str, np.ndarray]:
    """From `explain_recommendations(top=1, spec=...)`: per instance (in order), the first n specific
    latents as shown ('cited') and the n largest contributions of any group ('top_contrib'); -1 pads."""
    inst = expl["instance"].unique()
    pos = {v: i for i, v in enumerate(inst)}
    out = {k: np.full((len(inst), n), -1, dtype=np.int64) for k in ("cited", "top_contrib")}
    lat = expl[expl["latent"] >= 0]
    spec = lat[lat["group"] == "specific"].groupby("instance", sort=False).head(n)
    big = lat.sort_values(["instance", "contribution"], ascending=[True, False], kind="stable")
    big = big.groupby("instance", sort=False).head(n)
    for key, df in (("cited", spec), ("top_contrib", big)):
        r = df["instance"].map(pos).to_numpy()
        c = df.groupby("instance", sort=False).cumcount().to_numpy()
        out[key][r, c] = df["latent"].to_numpy()
    return out


def matched_controls(z_idx: np.ndarray, z_val: np.ndarray, cited: np.ndarray, generic: np.ndarray,
                     seed: int = 0) -> np.ndarray:
    """(B, n): for each cited latent, an active specific latent of the same instance that is not cited, the
    one with the nearest activation (each used once; ties broken by a seeded jitter); -1 when none is left."""
    rng = np.random.default_rng(seed)
    B, n = cited.shape
    out = np.full((B, n), -1, dtype=np.int64)
    zi, zv = np.asarray(z_idx), np.asarray(z_val, dtype=np.float64)
    jitter = rng.random(zv.shape) * 1e-9
    ok = (zv > 0) & ~np.asarray(generic, bool)[zi] & ~(zi[:, :, None] == cited[:, None, :]).any(2)
    for c in range(n):                       # n = 3 passes over the whole batch, not a loop per instance
        has = cited[:, c] >= 0
        val_c = np.where(has, (zv * (zi == cited[:, c:c + 1])).sum(1), np.nan)
        dist = np.where(ok, np.abs(zv - val_c[:, None]) + jitter, np.inf)
        best = dist.argmin(1)
        found = has & np.isfinite(dist[np.arange(B), best])
        out[found, c] = zi[found, best[found]]
        ok[found, best[found]] = False
    return out


def ablation_ranks(E: torch.Tensor, W_dec: torch.Tensor, h: torch.Tensor, z_idx: np.ndarray, z_val: np.ndarray,
                   users: np.ndarray, mask: tuple, item: np.ndarray, remove: np.ndarray) -> np.ndarray:
    """(B,) rank of `item` (1-based, ties against it) in SASRec's masked ranking after setting the code of the
    latents `remove` (B, n; -1 = none) to 0 with the reconstruction error kept."""
    zi, zv = torch.as_tensor(np.asarray(z_idx)).long(), torch.as_tensor(np.asarray(z_val)).float()
    rm = torch.as_tensor(remove).long()
    hit = ((zi[:, :, None] == rm[:, None, :]) & (rm[:, None, :] >= 0)).any(2)       # (B, k)
    h1 = torch.as_tensor(h).float() - torch.einsum("bk,bkd->bd", zv * hit, W_dec.float()[zi])
    s = mask_known(h1 @ E.float().T, np.asarray(users), *mask, inplace=True)
    t = s[torch.arange(len(s)), torch.from_numpy(np.array(item, dtype=np.int64))]
    return (s >= t[:, None]).sum(1).numpy()


def semantic_agreement(first: np.ndarray, item: np.ndarray, label_genres: list, item_genres: np.ndarray,
                       seed: int = 0) -> tuple[float, float]:
    """(share, shuffled share): explanations whose first cited latent's label names a genre the item has,
    and the same with the items shuffled across explanations (seeded). `label_genres[j]`: genre columns of
    latent j's label; `item_genres` (n_items, G) bool."""
    first, item = np.asarray(first), np.asarray(item)
    ok = first >= 0

    def share(items: np.ndarray) -> float:
        hits = [bool(item_genres[i, label_genres[j]].any()) if len(label_genres[j]) else False
                for j, i in zip(first[ok], items[ok])]
        return float(np.mean(hits)) if hits else float("nan")

    return share(item), share(np.random.default_rng(seed).permutation(item))


def deletion_test(E: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor, h: torch.Tensor, z_idx: np.ndarray,
                  z_val: np.ndarray, users: np.ndarray, mask: tuple, spec: Specificity, label_genres: list,
                  item_genres: np.ndarray, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """The test on the given rows: per instance, the recommended item, its rank before and after each deletion
    (cited, matched control, top contributions), and the summary (medians, the share where deleting the
    cited concepts drops the item more than the control, semantic agreement)."""
    E, W = torch.as_tensor(E).float(), torch.as_tensor(W_dec).float()
    h = torch.as_tensor(h).float()
    B = len(h)
    known = torch.zeros(B, len(E), dtype=torch.bool)
    known = mask_known(known.float(), np.asarray(users), *mask, inplace=True) == -np.inf   # (B, n_items) masked
    expl = explain_recommendations(z_idx, z_val, W.numpy(), np.asarray(b_dec, dtype=np.float64), E.numpy(), top=1,
                                   mask=known.numpy(), spec=spec)
    item = expl.drop_duplicates("instance").sort_values("instance")["item_id"].to_numpy()
    sets = cited_latents(expl)
    sets["control"] = matched_controls(z_idx, z_val, sets["cited"], spec.generic, seed)
    none = np.full_like(sets["cited"], -1)
    r0 = ablation_ranks(E, W, h, z_idx, z_val, users, mask, item, none)
    df = pd.DataFrame({"item_id": item, "rank_before": r0})
    for key in ("cited", "control", "top_contrib"):
        df[f"rank_{key}"] = ablation_ranks(E, W, h, z_idx, z_val, users, mask, item, sets[key])
        df[f"drop_{key}"] = df[f"rank_{key}"] - r0
        df[f"n_{key}"] = (sets[key] >= 0).sum(1)
    genre, shuffled = semantic_agreement(sets["cited"][:, 0], item, label_genres, item_genres, seed)
    full = (df["n_cited"] == N_CITED) & (df["n_control"] == N_CITED)
    d = df[full]
    summary = {"instances": int(B), "with_three_cited_and_controls": int(full.sum()),
               "median_drop_cited": float(d["drop_cited"].median()) if len(d) else None,
               "median_drop_control": float(d["drop_control"].median()) if len(d) else None,
               "median_drop_top_contrib": float(df["drop_top_contrib"].median()),
               "share_cited_beats_control": float((d["drop_cited"] > d["drop_control"]).mean()) if len(d) else None,
               "semantic_agreement": genre, "semantic_agreement_shuffled": shuffled}
    return df, summary
