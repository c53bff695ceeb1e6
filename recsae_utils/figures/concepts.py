"""Paper figures of stages 05-07 (the concept dictionaries, steering and the yardstick), in the one report style (`reports.set_style`), sized for a
two-column paper (7 in wide for a full-width figure, 3.5 in for one column).

Every function returns the matplotlib Figure; the caller saves it with `reports.save_figure(fig, dir,
name)` (PNG + PDF). Inputs are the objects of `concepts`: a `ConceptDictionary`, the DataFrames of
`instance_concepts` / `item_concepts` / `detection_scores`. Labels may be given as a labels DataFrame
(latent, name[, description, labeler]), a {latent: name | {'name': ...}} mapping, a sequence, or None.
"""
from __future__ import annotations

import math
import textwrap
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import dictionary as C
from ..detection import MIN_POS_SUMMARY
from ..reports import set_style

FULL_WIDTH = 7.0     # inches: a figure spanning both columns
COL_WIDTH = 3.5      # inches: one column
TITLE_CHARS = 30     # movie titles / labels wrap at this width (up to 3 lines)
PROFILE_LABEL_CHARS = 60   # the same for the concept labels of user / movie profiles
LAT_COLOR = "C0"     # the latent's side of a comparison
BASE_COLOR = "0.7"   # the all-histories baseline
HEATMAP_CLIP = 5.0   # |log2 odds ratio| beyond this shares the end colour (Haldane-corrected extremes)


# ----------------------------------------------------------------------------------------------------
# Helpers


def _plt():
    import matplotlib.pyplot as plt
    return plt


def _wrap(s: Any, width: int = TITLE_CHARS, max_lines: int = 3) -> str:
    """Long titles and labels wrap onto up to `max_lines` lines (an ellipsis only beyond that)."""
    return textwrap.fill("" if s is None else str(s), width, max_lines=max_lines, placeholder=" \u2026",
                         break_on_hyphens=False)


def _label_info(labels, j: int) -> dict:
    """{'name', 'description', 'labeler'} of latent j from any accepted labels form (values may be None)."""
    out = {"name": None, "description": None, "labeler": None}
    if labels is None:
        return out
    if isinstance(labels, str):
        out["name"] = labels
        return out
    if isinstance(labels, pd.DataFrame):
        col = "name" if "name" in labels.columns else "label" if "label" in labels.columns else None
        if col is None or "latent" not in labels.columns:
            raise ValueError("labels DataFrame needs columns 'latent' and 'name' (or 'label')")
        rows = labels[labels["latent"] == j]
        if len(rows):
            r = rows.iloc[-1]
            out["name"] = r[col]
            out["description"] = r.get("description")
            out["labeler"] = r.get("labeler")
    elif isinstance(labels, pd.Series):
        if j in labels.index:
            out["name"] = labels.loc[j]
    elif isinstance(labels, Mapping):
        if "name" in labels and not any(isinstance(k, (int, np.integer)) for k in labels):
            lab = labels                       # a single label dict
        else:
            lab = labels.get(j, labels.get(str(j)))
        if isinstance(lab, Mapping):
            out.update({k: lab.get(k) for k in out})
        elif lab is not None:
            out["name"] = lab
    else:
        seq = list(labels)
        if 0 <= j < len(seq):
            out["name"] = seq[j]
    for k, v in out.items():
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or str(v) == "":
            out[k] = None
        else:
            out[k] = str(v)
    return out


def _name(labels, j: int, fallback: str | None = None) -> str:
    return _label_info(labels, j)["name"] or fallback or f"latent {j}"


def _score_dict(scores, j: int) -> dict:
    """A latent's scores from a detection_scores-like DataFrame (row latent == j), a Series or a dict."""
    if scores is None:
        return {}
    if isinstance(scores, pd.DataFrame):
        rows = scores[scores["latent"] == j] if "latent" in scores.columns else scores.loc[[j]]
        return {} if rows.empty else rows.iloc[-1].to_dict()
    if isinstance(scores, pd.Series):
        return scores.to_dict()
    return dict(scores)


def _score_text(sc: Mapping) -> str:
    parts = []
    for key, short in (("bal_acc_random", "bal. acc."), ("auc_random", "ROC-AUC"),
                       ("bal_acc_matched", "bal. acc. (pop.-matched)"), ("auc_matched", "AUC (pop.-matched)"),
                       ("confidence", "judge")):
        v = sc.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            parts.append(f"{short} {float(v):.2f}")
    return ", ".join(parts)


def _empty(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_xticks([])
    ax.set_yticks([])


def _latent_rows(d: C.ConceptDictionary, j: int) -> pd.DataFrame:
    t = d.tables
    sl = slice(t.ptr[j], t.ptr[j + 1])
    items = t.item[sl]
    return pd.DataFrame({"item_id": items, "rank": np.arange(1, len(items) + 1), "count": t.count[sl],
                         "strength": t.strength[sl], "lift": t.lift[sl],
                         "title": [str(x) for x in d.display[items]]})


def _barh(ax, labels: list[str], values, color=LAT_COLOR, annot: list[str] | None = None, xlabel: str = "",
          maxlen: int = TITLE_CHARS):
    y = np.arange(len(values))
    bars = ax.barh(y, values, color=color, height=0.7)
    ax.set_yticks(y, [_wrap(s, maxlen) for s in labels], fontsize=7 if any(len(str(s)) > maxlen for s in labels) else None)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    if annot:
        xmax = max(values) if len(values) else 1.0
        for yy, v, a in zip(y, values, annot):
            ax.text(v + 0.01 * xmax, yy, a, va="center", ha="left", fontsize=7, color="0.25")
        ax.set_xlim(0, xmax * 1.25 if xmax > 0 else 1)
    return bars


def _paired_bars(ax, names: list[str], top: np.ndarray, base: np.ndarray, sig: np.ndarray, horizontal: bool):
    """The latent's share of top slots next to the all-histories share; '*' = significantly enriched."""
    pos = np.arange(len(names))
    w = 0.4
    if horizontal:
        ax.barh(pos - w / 2, top, height=w, color=LAT_COLOR, label="latent's firings")
        ax.barh(pos + w / 2, base, height=w, color=BASE_COLOR, label="all histories")
        ax.set_yticks(pos, names)
        ax.invert_yaxis()
        ax.set_xlabel("share of history slots")
        ax.grid(axis="y", visible=False)
        for p, v, s in zip(pos, top, sig):
            if s:
                ax.text(v, p - w / 2, " *", va="center", ha="left", fontsize=9, color="C3", fontweight="bold")
    else:
        ax.bar(pos - w / 2, top, width=w, color=LAT_COLOR, label="latent's firings")
        ax.bar(pos + w / 2, base, width=w, color=BASE_COLOR, label="all histories")
        ax.set_xticks(pos, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
        ax.set_ylabel("share of history slots")
        ax.grid(axis="x", visible=False)
        for p, v, s in zip(pos, top, sig):
            if s:
                ax.text(p - w / 2, v, "*", va="bottom", ha="center", fontsize=9, color="C3", fontweight="bold")
    from matplotlib.ticker import PercentFormatter
    (ax.xaxis if horizontal else ax.yaxis).set_major_formatter(PercentFormatter(1.0, decimals=0))


def _enrich_arrays(d: C.ConceptDictionary, j: int, kind: str):
    cols = np.flatnonzero(d.feats.kind == kind)
    e = d.enrich
    with np.errstate(invalid="ignore", divide="ignore"):
        top = np.nan_to_num(e.share_top[j, cols])
        base = np.nan_to_num(e.share_all[cols])
    sig = (e.p_value[j, cols] < C.ENRICH_ALPHA) & (e.odds_ratio[j, cols] >= C.ENRICH_MIN_OR) & (top >= C.ENRICH_MIN_SHARE)
    values = [d.feats.value[c] for c in cols]
    return cols, values, top, base, np.nan_to_num(sig).astype(bool)


def _pool_text(d: C.ConceptDictionary, latents, short: bool = False) -> str:
    """What the item tables and enrichment pool: all of the latents' training firings, or their top ones."""
    pool = np.asarray(d.tables.n_top)[list(latents)]
    fires = np.asarray(d.stats.n_fire)[list(latents)]
    if np.array_equal(pool, fires):
        return "all firings" if short else (f"latent's firings (all {int(pool[0]):,})" if len(pool) == 1
                                            else "latents' firings (all)")
    return (f"top {int(pool.max()):,} firings" if short else
            f"latent's top {int(pool[0]):,} firings" if len(pool) == 1 else "latents' top firings")


def _profile_height(names: list[str]) -> float:
    lines = sum(_wrap(n, PROFILE_LABEL_CHARS).count("\n") + 1 for n in names)
    return 0.8 + 0.14 * lines + 0.14 * len(names)


# ----------------------------------------------------------------------------------------------------
# Figures


def concept_card(d: C.ConceptDictionary, latent: int, label=None, scores=None, top: int = 10,
                 max_genres: int = 8):
    """One latent on one full-width figure: top movies by activation count and by strength (with lift),
    genre mix (top-sequence share vs all histories, '*' = significantly enriched) and decade mix; the
    title holds the label, the subtitle the firing rate, popularity, flags and scores.

    label: a name, a {'name', 'description', 'labeler'} dict, or any labels form (looked up by latent);
    without it the card says 'latent j'. scores: a detection_scores row / DataFrame / dict."""
    set_style()
    plt = _plt()
    j = int(latent)
    if not 0 <= j < d.m:
        raise IndexError(f"latent {j} out of range [0, {d.m})")
    info = _label_info(label, j)
    rows = _latent_rows(d, j)
    fig = plt.figure(figsize=(FULL_WIDTH, 6.6), layout="constrained")
    gs = fig.add_gridspec(2, 2, height_ratios=[max(top, 4), max(min(max_genres, 8), 4)])
    ax_c, ax_s = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    ax_g, ax_d = fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])

    n_top = int(d.tables.n_top[j])
    if len(rows):
        bc = rows.sort_values(["count", "strength", "rank"], ascending=[False, False, True]).head(top)
        _barh(ax_c, bc["title"].tolist(), bc["count"].to_numpy(), annot=[f"lift {x:.1f}" for x in bc["lift"]],
              xlabel=f"firing sequences containing it (of {n_top})")
        bs = rows.sort_values(["strength", "count", "rank"], ascending=[False, False, True]).head(top)
        _barh(ax_s, bs["title"].tolist(), bs["strength"].to_numpy(), color="C2",
              annot=[f"lift {x:.1f}" for x in bs["lift"]], xlabel="strength (sum of activations)")
    else:
        _empty(ax_c, "never fires")
        _empty(ax_s, "never fires")
    ax_c.set_title("top movies by activation count", loc="left")
    ax_s.set_title("top movies by strength", loc="left")

    _, g_names, g_top, g_base, g_sig = _enrich_arrays(d, j, "genre")
    if len(g_names) and g_top.sum() > 0:
        o = np.lexsort((np.arange(len(g_top)), -g_top))[:max_genres]
        o = o[g_top[o] > 0]
        _paired_bars(ax_g, [str(g_names[i]) for i in o], g_top[o], g_base[o], g_sig[o], horizontal=True)
    else:
        _empty(ax_g)
    ax_g.set_title("genre mix (* = enriched)", loc="left")
    _, d_vals, d_top, d_base, d_sig = _enrich_arrays(d, j, "decade")
    keep = [i for i in range(len(d_vals)) if d_top[i] > 0 or d_base[i] >= 0.01]
    if keep and d_top.sum() > 0:
        _paired_bars(ax_d, [f"{int(d_vals[i])}s" for i in keep], d_top[keep], d_base[keep], d_sig[keep],
                     horizontal=False)
        ax_d.tick_params(axis="x", labelrotation=90)
    else:
        _empty(ax_d)
    ax_d.set_title("decade mix (* = enriched)", loc="left")
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=LAT_COLOR, label=_pool_text(d, [j])),
                        Patch(color=BASE_COLOR, label="all training histories")],
               loc="outside lower center", ncols=2, frameon=False, fontsize=7)

    name = info["name"] or f"latent {j}"
    head = f"Latent {j}: {name}"
    sub = [f"fires on {100 * d.stats.freq[j]:.2f}% of histories"]
    pp = d.popularity_pct[j]
    if np.isfinite(pp):
        sub.append(f"popularity pct. {pp:.0f}")
    flags = [f for f, on in (("generic", d.generic[j]), ("popularity", d.popularity_flag[j])) if on]
    if flags:
        sub.append("flags: " + ", ".join(flags))
    st = _score_text(_score_dict(scores, j))
    if st:
        sub.append(st)
    if info["labeler"]:
        sub.append(f"label: {info['labeler']}")
    lines = textwrap.wrap(head, 100, break_on_hyphens=False) + textwrap.wrap(" \u00b7 ".join(sub), 100)  # wrapped: never widens the figure
    if info["description"]:
        lines += textwrap.wrap(info["description"], 100)[:2]
    fig.suptitle("\n".join(lines), fontsize=9, x=0.01, ha="left")
    fig._suptitle.set_fontweight("normal")
    return fig


def enrichment_heatmap(d: C.ConceptDictionary, latents, labels=None, kind: str = "genre",
                       max_label: int = 44):
    """Latent x genre log2 odds ratio of enrichment among the latents' top sequences (diverging colormap
    centred at 0; blank = no data); '*' marks significant enrichment (concepts.ENRICH_*). kind='decade'
    draws decades instead."""
    set_style()
    plt = _plt()
    import seaborn as sns
    lat = [int(j) for j in latents]
    if not lat:
        raise ValueError("no latents to draw")
    cols = np.flatnonzero(d.feats.kind == kind)
    if cols.size == 0:
        raise ValueError(f"the dictionary has no {kind} features")
    e = d.enrich
    with np.errstate(invalid="ignore", divide="ignore"):
        l2 = np.log2(e.odds_ratio[np.ix_(lat, cols)])
        share = e.share_top[np.ix_(lat, cols)]
    sig = (e.p_value[np.ix_(lat, cols)] < C.ENRICH_ALPHA) & (e.odds_ratio[np.ix_(lat, cols)] >= C.ENRICH_MIN_OR) \
        & (np.nan_to_num(share) >= C.ENRICH_MIN_SHARE)
    names = [f"{v}s" if kind == "decade" else str(v) for v in (d.feats.value[c] for c in cols)]
    rows = [_wrap(f"{j}: {_name(labels, j)}", max_label, max_lines=4) for j in lat]
    df = pd.DataFrame(l2, index=rows, columns=names)
    finite = np.isfinite(l2)
    top_abs = float(np.nanmax(np.abs(l2[finite]))) if finite.any() else 1.0
    vmax = float(np.clip(top_abs, 1.0, HEATMAP_CLIP))   # symmetric limits: 0 is the centre of the colormap
    cbar_label = "log2 odds ratio" + (f" (clipped at \u00b1{HEATMAP_CLIP:g})" if top_abs > HEATMAP_CLIP else "")
    h = 1.8 + 0.16 * sum(r.count("\n") + 1 for r in rows) + 0.08 * len(lat)
    w = min(FULL_WIDTH, 2.2 + 0.3 * len(names) + 0.06 * max(len(line) for r in rows for line in r.split("\n")))
    fig, ax = plt.subplots(figsize=(max(w, COL_WIDTH), h), layout="constrained")
    sns.heatmap(df, ax=ax, cmap="RdBu_r", vmin=-vmax, vmax=vmax, mask=~finite, linewidths=0.3, xticklabels=True,
                yticklabels=True,
                linecolor="white", cbar_kws={"label": cbar_label, "shrink": 0.8})
    for r, c in zip(*np.nonzero(sig)):
        ax.text(c + 0.5, r + 0.5, "*", ha="center", va="center", fontsize=8,
                color="white" if abs(l2[r, c]) > 0.6 * vmax else "black")
    ax.set_xlabel(kind)
    ax.set_ylabel("")
    plt.setp(ax.get_xticklabels(), rotation=55, ha="right", rotation_mode="anchor")
    plt.setp(ax.get_yticklabels(), rotation=0, fontsize=7)
    ax.set_title(f"{kind.capitalize()} enrichment of each latent's firings, {_pool_text(d, lat, short=True)} "
                 "(* = significant)", loc="left", wrap=True)
    return fig


def _specific_first(rows: pd.DataFrame, vcol: str, top: int) -> tuple[pd.DataFrame, list, str]:
    """Rows to draw, their bar colours and a title note: with a `group` column (`specificity`), the top
    specific concepts in their rank order, then up to `top` background (generic) ones in grey; without
    it, the largest values first."""
    if "group" not in rows.columns or "rank" not in rows.columns:
        rows = rows.sort_values([vcol, "latent"], ascending=[False, True]).drop_duplicates("latent").head(top)
        return rows, [LAT_COLOR] * len(rows), ""
    bg = (rows["group"] == "background").to_numpy()
    rows = rows.assign(_bg=bg).sort_values(["_bg", "rank"], kind="stable").drop_duplicates("latent")
    rows = rows.groupby("_bg", sort=False).head(top)
    colors = [BASE_COLOR if b else LAT_COLOR for b in rows["_bg"]]
    return rows, colors, " (specific first; grey: generic background)" if rows["_bg"].any() else ""


def user_profile(instance_concepts_df: pd.DataFrame, user, labels=None, top: int = 10):
    """A user's (instance's) top latents with their activations and labels, as horizontal bars. The
    frame is `concepts.instance_concepts` output, keyed by 'user', 'user_id' or 'instance'; when a user
    has several instances there, the latest one (largest 'instance') is drawn. With a `group` column
    (`instance_concepts(spec=...)`): specific concepts first, the generic background group apart in grey."""
    set_style()
    plt = _plt()
    df = instance_concepts_df
    key = next((c for c in ("user", "user_id", "instance") if c in df.columns), None)
    vcol = next((c for c in ("activation", "value", "strength") if c in df.columns), None)
    if key is None or vcol is None:
        raise ValueError("need a 'user'/'user_id'/'instance' column and an 'activation'/'value' column")
    rows = df[df[key].astype(str) == str(user)]
    if rows.empty:
        raise KeyError(f"no rows for {key} {user!r}")
    note = ""
    if key != "instance" and "instance" in rows.columns and rows["instance"].nunique() > 1:
        last = rows["instance"].max()          # instances are in time order within a user: the latest
        rows = rows[rows["instance"] == last]
        note = f" (latest instance, {last})"
    rows, colors, group_note = _specific_first(rows, vcol, top)
    names = [f"#{j} {_name(labels, j, lab if isinstance(lab, str) else None)}"
             for j, lab in zip(rows["latent"].astype(int), rows.get("label", pd.Series([None] * len(rows))).tolist())]
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, _profile_height(names)), layout="constrained")
    _barh(ax, names, rows[vcol].to_numpy(dtype=float), color=colors, annot=[f"{v:.2f}" for v in rows[vcol]],
          xlabel=vcol, maxlen=PROFILE_LABEL_CHARS)
    ax.set_title(f"{'User' if key != 'instance' else 'Instance'} {user}: top concepts{note}{group_note}", loc="left")
    return fig


def _resolve_item(df: pd.DataFrame, item_title, items: pd.DataFrame | None) -> tuple[int, str]:
    """(item_id, title) of a title (exact, case-insensitive; else a unique substring) or an item id."""
    titles = None
    if "title" in df.columns:
        titles = df.drop_duplicates("item_id").set_index("item_id")["title"]
    elif items is not None and "title" in items.columns:
        titles = items.drop_duplicates("item_id").set_index("item_id")["title"]
    if isinstance(item_title, (int, np.integer)):
        i = int(item_title)
        return i, str(titles.get(i, f"item {i}")) if titles is not None else f"item {i}"
    if titles is None:
        raise ValueError("movie titles unknown: pass items= (item_id, title) or a frame with a 'title' column")
    q = str(item_title).strip().lower()
    low = titles.astype(str).str.lower()
    exact = titles[low == q]
    if len(exact) == 0:
        exact = titles[low.str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True) == q]
    if len(exact) >= 1:
        return int(exact.index[0]), str(exact.iloc[0])
    part = titles[low.str.contains(q, regex=False)]
    if len(part) == 1:
        return int(part.index[0]), str(part.iloc[0])
    if len(part) == 0:
        raise KeyError(f"no movie titled {item_title!r}")
    raise ValueError(f"{item_title!r} matches {len(part)} movies, e.g. {part.head(5).tolist()}")


def movie_profile(item_concepts_df: pd.DataFrame, item_title, labels=None, top: int = 10,
                  items: pd.DataFrame | None = None):
    """A movie's top concepts by total activation strength over the sequences holding it
    (`concepts.item_concepts` output; with its `group` column, specific concepts first and the generic
    background group apart in grey), with each concept's share of the movie's total. The title is
    matched case-insensitively (with or without the year); an int is taken as the item id. Titles come
    from a 'title' column of the frame or from `items` (the dataset's items table)."""
    set_style()
    plt = _plt()
    df = item_concepts_df
    i, title = _resolve_item(df, item_title, items)
    rows = df[df["item_id"] == i]
    if rows.empty:
        raise KeyError(f"no concepts for item {i} ({title})")
    rows, colors, group_note = _specific_first(rows, "strength", top)
    colors = ["C2" if c == LAT_COLOR else c for c in colors]
    labs = rows["label"].tolist() if "label" in rows.columns else [None] * len(rows)
    names = [f"#{j} {_name(labels, j, lab if isinstance(lab, str) else None)}"
             for j, lab in zip(rows["latent"].astype(int), labs)]
    annot = [f"{100 * s:.0f}%" for s in rows["share"]] if "share" in rows.columns else None
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, _profile_height(names)), layout="constrained")
    _barh(ax, names, rows["strength"].to_numpy(dtype=float), color=colors, annot=annot, maxlen=PROFILE_LABEL_CHARS,
          xlabel="total strength" + (" (% = share of the movie's total)" if annot else ""))
    ax.set_title(f"{_wrap(title, 90, 2)}: top concepts{group_note}", loc="left")
    return fig


def score_name(column: str) -> str:
    """Axis text of a score column: 'bal_acc_matched' -> 'balanced accuracy (pop.-matched negatives)'."""
    base = {"bal_acc": "balanced accuracy", "auc": "ROC-AUC"}
    for k, v in base.items():
        if column.startswith(k + "_"):
            rest = column[len(k) + 1:]
            return v + {"random": " (random negatives)", "matched": " (pop.-matched negatives)"}.get(rest, f" ({rest})")
    return column.replace("_", " ")


def score_distributions(scores_by_model: dict[str, pd.DataFrame], column: str = "auc_random",
                        only_signed: bool = False, min_pos: int | None = None):
    """Distributions of one label score per model (e.g. 'SAE', 'raw dimensions', 'random SAE'): violins
    (boxes for tiny groups) on the left, ECDFs on the right. Reference lines: chance (0.5) for AUC /
    balanced accuracy, and the 0.8 'interpretable' line when a balanced-accuracy column is shown.
    only_signed=True keeps latents with a label signature ('has_signature') only. A latent counts only with
    at least `min_pos` held-out positives (default: the rule of `score_summary`), so the figure's n is the
    summary table's n_scored."""
    min_pos = MIN_POS_SUMMARY if min_pos is None else min_pos
    set_style()
    plt = _plt()
    import seaborn as sns
    parts = []
    for model, df in scores_by_model.items():
        if column not in df.columns:
            raise KeyError(f"{model}: no column {column!r}")
        sub = df[df["has_signature"].astype(bool)] if only_signed and "has_signature" in df.columns else df
        sub = sub[sub["n_pos"] >= max(int(min_pos), 1)] if "n_pos" in sub.columns else sub
        v = pd.to_numeric(sub[column], errors="coerce").dropna().to_numpy(dtype=float)
        parts.append(pd.DataFrame({"model": model, column: v}))
    if not parts:
        raise ValueError("no models given")
    long = pd.concat(parts, ignore_index=True)
    order = list(scores_by_model)
    palette = dict(zip(order, sns.color_palette("colorblind", len(order))))
    nice = score_name(column)
    is_ba = column.startswith("bal_acc")
    chance = column.startswith(("bal_acc", "auc")) or column in ("confidence",)
    fig, (ax_v, ax_e) = plt.subplots(1, 2, figsize=(FULL_WIDTH, 2.8), layout="constrained",
                                     gridspec_kw={"width_ratios": [1.1, 1]})
    sizes = long.groupby("model")[column].size().reindex(order).fillna(0)
    if (sizes >= 5).all():
        sns.violinplot(data=long, x="model", y=column, hue="model", order=order, hue_order=order, palette=palette,
                       cut=0, inner="quartile", density_norm="width", linewidth=0.8, ax=ax_v, legend=False)
    else:
        sns.boxplot(data=long, x="model", y=column, hue="model", order=order, hue_order=order, palette=palette,
                    ax=ax_v, legend=False)
    ax_v.set_xticks(range(len(order)), [textwrap.fill(str(m), 12) for m in order])   # wrapped: no collisions
    ax_v.set_xlabel("")
    ax_v.set_ylabel(nice)
    ax_v.grid(axis="x", visible=False)
    for model in order:
        v = long.loc[long["model"] == model, column]
        lab = f"{model} (n={len(v):,}, median {v.median():.2f}" + (f", {100 * (v >= 0.8).mean():.0f}% \u2265 0.8" if is_ba and len(v) else "") + ")"
        if len(v):
            sns.ecdfplot(x=v.to_numpy(), ax=ax_e, color=palette[model], label=lab, linewidth=1.4)
    ax_e.set_xlabel(nice)
    ax_e.set_ylabel("share of latents \u2264 x")
    if chance:
        ax_v.axhline(0.5, color="0.5", linestyle=":", linewidth=1, gid="chance")
        ax_e.axvline(0.5, color="0.5", linestyle=":", linewidth=1, gid="chance")
    if is_ba:
        ax_v.axhline(0.8, color="C3", linestyle="--", linewidth=1, gid="threshold-0.8")
        ax_e.axvline(0.8, color="C3", linestyle="--", linewidth=1, gid="threshold-0.8", label="0.8 (interpretable)")
    handles, labs = ax_e.get_legend_handles_labels()
    fig.legend(handles, labs, loc="outside lower center", ncols=2, frameon=False, fontsize=7)
    ax_v.set_title("distribution by model", loc="left")
    ax_e.set_title("cumulative distribution", loc="left")
    return fig


# ----------------------------------------------------------------------------------------------------
# Interventions (stage 06)


def dose_response(table: pd.DataFrame):
    """Label-share gain and concept-item share of the top 10 against the dose (beta x median ||h_u||), median
    across units with the interquartile range, one line per model (`steering.dose_table`)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH, 2.8))
    panels = (("label_gain", "label_gain_q25", "label_gain_q75", "label share gain of the top 10"),
              ("concept_after", "concept_q25", "concept_q75", "concept-item share of the top 10"))
    for ax, (mid, lo, hi, ylab) in zip(axes, panels):
        if table is None or not len(table):
            _empty(ax)
            continue
        for c, (name, t) in enumerate(table.groupby("model", sort=False)):
            ax.plot(t["beta"], t[mid], marker="o", color=f"C{c}", label=f"{name} ({int(t['units'].max())})")
            ax.fill_between(t["beta"], t[lo], t[hi], color=f"C{c}", alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("dose β (× median ‖h_u‖)")
        ax.set_ylabel(ylab)
    if table is not None and len(table):
        axes[0].legend(fontsize="small", title="model (units)", title_fontsize="small")
    fig.tight_layout()
    return fig


def steering_card(card: pd.DataFrame, title: str):
    """One user's top 10 before and after steering one latent (`interventions.recommend` output): titles with
    genres; items new to the list in the latent's colour."""
    plt = _plt()
    k = len(card)
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, 0.42 * k + 0.9))
    ax.set_axis_off()
    ax.set_xlim(0, 2)
    ax.set_ylim(k + 0.2, -1.0)
    ax.text(0, -0.7, "before", weight="bold")
    ax.text(1.02, -0.7, "after steering", weight="bold")
    old = set(card["item_before"].tolist())
    for r, row in enumerate(card.itertuples()):
        for x, item, t, new in ((0, row.item_before, row.title_before, False),
                                (1.02, row.item_after, row.title_after, row.item_after not in old)):
            g = row.genres_after if x > 0 else row.genres_before
            text = f"{r + 1}. {_wrap(t if t is not None else f'item {item}', 45, 1)}"
            ax.text(x, r, text, fontsize=7.5, color=LAT_COLOR if new else "black", va="center")
            if g:
                ax.text(x + 0.05, r + 0.38, _wrap(g, 60, 1), fontsize=6, color="0.45", va="center")
    ax.set_title(_wrap(title, 110, 2), fontsize=9, loc="left")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------
# The concept yardstick (stage 07)


def yardstick_tradeoff(steer: pd.DataFrame, variant: str = "target"):
    """Median concept gain of the top 10 against the median NDCG@10 lost, one line per method through the
    matched-KL targets (`yardstick.steering_table`): what each direction buys for the harm it does."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, 3.6))
    st = steer[steer["variant"] == variant] if steer is not None and len(steer) else None
    if st is None or not len(st):
        _empty(ax)
        return fig
    st = st.assign(lost=1 - st["ndcg_after"] / st["ndcg_before"])
    g = st.groupby(["method", "kl_target"], sort=False)[["gain", "lost"]].median().reset_index()
    sae_like = {"sae_in", "sae_out", "sae_multi3", "sae_multi5"}
    for c, (m, t) in enumerate(g.groupby("method", sort=False)):
        style = "-" if m in sae_like else "--" if m in ("diffmean", "probe", "item_dir") else ":"
        ax.plot(t["lost"], t["gain"], style, marker="o", ms=3, color=f"C{c % 10}", label=m)
        last = t.iloc[-1]
        ax.annotate(f"KL {last['kl_target']:g}", (last["lost"], last["gain"]), fontsize=5.5, color="0.4",
                    xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("NDCG@10 lost (1 − steered / unedited, median over concepts)")
    ax.set_ylabel("concept share gain of the top 10")
    ax.axhline(0, color="0.7", lw=0.6)
    ax.legend(fontsize="x-small", ncol=2, loc="upper left", title="method (solid: SAE, dashed: supervised)",
              title_fontsize="x-small")
    fig.tight_layout()
    return fig
