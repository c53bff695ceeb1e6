"""The original study's four views on ML-1M, exported where a reader looks and placed beside ours: every
latent's top items by activation count and by strength (`concepts/latent_top_items.csv`; the lift-ranked
`latent_items.csv` can miss an item that tops the count list) and `concepts/poster_views.md` (the with/without-SAE
table, user 36's concepts, the study's concept ids, Wonder Boys' concepts, and the "offbeat 2000 comedies"
concept found by a stated rule). The study's latent ids come from its own SAE: the same id names an unrelated
latent of ours, so its views are compared by what they show, never id for id."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts
from .tables import md, recommendation_table, table

TOP_ITEMS = 20   # per latent and per view (count, strength), as the study's dictionary listed them

# What the original study (a student reproduction of RecSAE on ML-1M, shown on its poster) reported; its
# labels were written by ChatGPT. Its metrics are the "original study" rows of the recommendation table.
STUDY = {"user": 36, "user_latents": [1746, 2000, 1637], "user_values": [7.55, 7.14, 6.44],
         "movie": "Wonder Boys (2000)", "movie_latents": [1637, 1820, 803], "generic_latents": [1637, 447, 803],
         "concept": "Offbeat character-driven comedies or dramedies", "labeler": "ChatGPT"}

# The "offbeat 2000 comedies" rule: among live, non-generic latents, the one whose top OFFBEAT_TOP items by
# activation count hold the most Comedy titles released in OFFBEAT_YEAR; ties go to the lower median popularity
# percentile of those items (offbeat = less popular). At least OFFBEAT_MIN of them must match, else none.
OFFBEAT_YEAR, OFFBEAT_GENRE, OFFBEAT_TOP, OFFBEAT_MIN = 2000, "Comedy", 10, 3
OFFBEAT_NAME = "offbeat 2000 comedies"


def latent_top_items(latent: np.ndarray, item: np.ndarray, count: np.ndarray, strength: np.ndarray,
                     titles=None, k: int = TOP_ITEMS) -> pd.DataFrame:
    """Every latent's top k items by activation count and by summed strength, one long table: latent, view
    ('count' | 'strength'), rank, item, title, value. Ties break by the other measure, then item id."""
    latent, item = np.asarray(latent, np.int64), np.asarray(item, np.int64)
    count, strength = np.asarray(count, np.float64), np.asarray(strength, np.float64)
    parts = []
    for view, main, other in (("count", count, strength), ("strength", strength, count)):
        order = np.lexsort((item, -other, -main, latent))
        lat = latent[order]
        start = np.r_[0, np.flatnonzero(np.diff(lat)) + 1]
        rank = np.arange(len(lat)) - np.repeat(start, np.diff(np.r_[start, len(lat)])) + 1
        keep = order[rank <= k]
        parts.append(pd.DataFrame({"latent": latent[keep], "view": view, "rank": rank[rank <= k],
                                   "item": item[keep], "value": main[keep]}))
    out = pd.concat(parts, ignore_index=True).sort_values(["latent", "view", "rank"], kind="stable")
    if titles is not None:
        t = np.asarray(titles, dtype=object)
        out.insert(4, "title", [str(t[i]) if 0 <= i < len(t) and t[i] is not None else "" for i in out["item"]])
    else:
        out.insert(4, "title", "")
    out["value"] = np.where(out["view"] == "count", out["value"].round(0), out["value"].round(4))
    return out.reset_index(drop=True)


def top_items_of(d, k: int = TOP_ITEMS) -> pd.DataFrame:
    """`latent_top_items` of a `dictionary.ConceptDictionary` over all its items (not the lift-ranked cut)."""
    t = d.tables
    lat = np.repeat(np.arange(d.m), np.diff(t.ptr))
    return latent_top_items(lat, t.item, t.count, t.strength, d.display, k)


def item_frame(d) -> pd.DataFrame:
    """item_id, title, year, genres, popularity percentile of a dictionary's items (what the rules read)."""
    n = d.n_items
    g = d.meta.get("genres")
    return pd.DataFrame({"item_id": np.arange(n), "title": list(d.meta.get("title", d.display)),
                         "year": list(d.meta.get("year", [None] * n)),
                         "genres": list(g) if g is not None else [[] for _ in range(n)],
                         "pop_pct": np.asarray(d.item_pct, np.float64)})


def find_offbeat(top: pd.DataFrame, items: pd.DataFrame, eligible) -> dict | None:
    """The "offbeat 2000 comedies" latent by the rule above (OFFBEAT_*): {latent, matches, of, median_pop_pct,
    titles} or None when no eligible latent has OFFBEAT_MIN matching items (e.g. Grocery: no years, no genres)."""
    if "year" not in items or "genres" not in items:
        return None
    it = items.set_index("item_id")
    c = top[(top["view"] == "count") & (top["rank"] <= OFFBEAT_TOP) & top["latent"].isin(list(eligible))].copy()
    if not len(c):
        return None
    yr = it["year"].reindex(c["item"]).to_numpy()
    gen = it["genres"].reindex(c["item"]).tolist()
    c["hit"] = [(y == OFFBEAT_YEAR) and isinstance(g, (list, tuple, np.ndarray)) and OFFBEAT_GENRE in list(g)
                for y, g in zip(yr, gen)]
    c["pop"] = it["pop_pct"].reindex(c["item"]).to_numpy() if "pop_pct" in it else 50.0
    g = c.groupby("latent").agg(matches=("hit", "sum"), of=("hit", "size"), pop=("pop", "median")).reset_index()
    g = g.sort_values(["matches", "pop", "latent"], ascending=[False, True, True])
    best = g.iloc[0]
    if best["matches"] < OFFBEAT_MIN:
        return None
    j = int(best["latent"])
    return {"latent": j, "matches": int(best["matches"]), "of": int(best["of"]),
            "median_pop_pct": float(best["pop"]), "name": OFFBEAT_NAME,
            "titles": c.loc[c["latent"] == j, "title"].tolist() if "title" in c else []}


def _tops(top: pd.DataFrame, j: int, view: str, n: int = 5) -> str:
    r = top[(top["latent"] == j) & (top["view"] == view)].sort_values("rank").head(n)
    return "; ".join(str(t) for t in r["title"]) if len(r) else "(never fires)"


def _side_by_side(ids: list, values: list | None, ours: pd.DataFrame, vcol: str, vname: str, lab, kind,
                  n: int = 10) -> str:
    """The study's ids (and values) beside our top n by `vcol`, largest first, whatever their group."""
    o = ours.sort_values(vcol, ascending=False, kind="stable").head(n) if len(ours) else ours
    rows = []
    for i in range(max(len(o), len(ids))):
        s = ([ids[i]] + ([f"{values[i]:.2f}"] if values else [])) if i < len(ids) else [""] * (1 + bool(values))
        r = o.iloc[i] if i < len(o) else None
        rows.append([i + 1] + s + ([int(r["latent"]), f"{float(r[vcol]):,.2f}", lab(r["latent"]), kind(r["latent"])]
                                   if r is not None else [""] * 4))
    head = ["rank", "study latent"] + (["study value"] if values else []) + ["our latent", f"our {vname}",
                                                                             "our label", "kind"]
    return table(head, rows, "rr" + ("r" if values else "") + "rrll")


def _specific_line(ours: pd.DataFrame, lab, n: int = 5) -> str:
    if "group" in ours:
        ours = ours[ours["group"] == "specific"]
    r = ours.sort_values("rank").head(n) if "rank" in ours else ours.head(n)
    return ("\nSpecific first: " + "; ".join(f"{int(j)} {lab(j)}" for j in r["latent"]) + ".\n") if len(r) else ""


def poster_views(summary: dict, top: pd.DataFrame, user_view: pd.DataFrame, movie_view: pd.DataFrame,
                 names: dict, generic, offbeat: dict | None, labeler: str) -> str:
    """concepts/poster_views.md: the study's four views, each with ours beside it (every data string escaped)."""
    gen = set(int(j) for j in generic)
    lab = lambda j: md(names.get(int(j), "(no label)"))
    kind = lambda j: "generic" if int(j) in gen else "specific"
    out = ["# The original study's views, ours beside them\n",
           f"The original study (a student reproduction of RecSAE on ML-1M, shown on its poster) labelled its latents "
           f"with {STUDY['labeler']}; ours come from the `{md(labeler)}` labeler. Its latent ids belong to its own "
           "SAE: an id of ours with the same number is an unrelated latent, so the views compare what they show. "
           "Written by `recsae_utils.poster` from the run; do not edit by hand.\n",
           "## 1 · Recommendation with and without the SAE\n",
           recommendation_table(summary) if summary.get("sasrec") else "(no SASRec section in summary.json)\n"]
    uv = user_view
    user = int(uv["user"].iloc[0]) if len(uv) else STUDY["user"]
    split = f" ({md(uv['split'].iloc[0])} instance)" if len(uv) and "split" in uv else ""
    vcol = "activation" if "activation" in uv else "value"
    out.append(f"## 2 · User {user}'s concepts{split}\n\nThe study printed the user's top latents by activation; "
               "ours in the same order beside them (among the specific and generic concepts the profile holds), then "
               "ours as the profiles and the browser show them (specific first, ranked by activation × log(1 / "
               "firing frequency)).\n\n"
               + _side_by_side(STUDY["user_latents"], STUDY["user_values"], uv, vcol, "activation", lab, kind)
               + _specific_line(uv, lab))
    ids = list(dict.fromkeys(STUDY["user_latents"] + STUDY["movie_latents"] + STUDY["generic_latents"]))
    m = int(top["latent"].max()) + 1 if len(top) else 0
    rows = [[j, md(_tops(top, j, "count")), md(_tops(top, j, "strength")), lab(j), kind(j)] for j in ids if j < m]
    out.append("## 3 · Top movies of the study's concept ids\n\nOur latents with the study's ids (unrelated "
               "latents: the ids are the study's SAE's), top 5 by activation count and by summed strength; every "
               "latent's top 20 of both: [latent_top_items.csv](latent_top_items.csv).\n\n"
               + table(["our latent", "top by count", "top by strength", "our label", "kind"], rows, "rllll"))
    if offbeat:
        j = offbeat["latent"]
        out.append(f"**The study's \"{md(STUDY['concept'])}\"** ({STUDY['labeler']}'s words), found here as "
                   f"\"{OFFBEAT_NAME}\" by a rule: the live, non-generic latent whose top {OFFBEAT_TOP} movies by "
                   f"activation count hold the most {OFFBEAT_GENRE} titles from {OFFBEAT_YEAR} (ties: lower median "
                   f"popularity). Latent {j}: {offbeat['matches']} of {offbeat['of']}, median popularity percentile "
                   f"{offbeat['median_pop_pct']:.0f}; top by count: {md(_tops(top, j, 'count', OFFBEAT_TOP))}; our "
                   f"label: {lab(j)}.\n")
    else:
        out.append(f"**The study's \"{md(STUDY['concept'])}\"**: no latent here has {OFFBEAT_MIN} or more "
                   f"{OFFBEAT_GENRE} titles from {OFFBEAT_YEAR} among its top {OFFBEAT_TOP} by count.\n")
    mv = movie_view
    title = md(mv["title"].iloc[0]) if len(mv) and "title" in mv else md(STUDY["movie"])
    out.append(f"## 4 · {title}'s concepts\n\nBy total activation strength over the training sequences that hold "
               f"it (the study's measure), ours in the same order beside the study's ids; of those ids the study "
               f"called {sorted(set(STUDY['movie_latents']) & set(STUDY['generic_latents']))} generic (they fire for "
               "a great many movies). Then ours specific first.\n\n"
               + _side_by_side(STUDY["movie_latents"], None, mv, "strength", "strength", lab, kind)
               + _specific_line(mv, lab))
    return "\n".join(out)


def write_poster_views(report_dir: str | Path, summary: dict, top: pd.DataFrame, user_view: pd.DataFrame,
                       movie_view: pd.DataFrame, names: dict, generic, items: pd.DataFrame, labeler: str,
                       eligible, titled: bool = True) -> dict:
    """Write concepts/latent_top_items.csv and, for a titled catalogue (the study's views are ML-1M's),
    concepts/poster_views.md; returns the summary's `poster` part (the offbeat latent found, or None)."""
    rep = Path(report_dir) / "concepts"
    rep.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_path(rep / "latent_top_items.csv") as tmp:
        top.to_csv(tmp, index=False)
    off = find_offbeat(top, items, eligible) if titled else None
    if titled:
        artifacts.write_text(rep / "poster_views.md",
                             poster_views(summary, top, user_view, movie_view, names, generic, off, labeler))
    return {"offbeat": off, "study_labeler": STUDY["labeler"], "views": "poster_views.md" if titled else None}


def save_poster_views(report_dir: str | Path, d, labels: pd.DataFrame, user_view: pd.DataFrame,
                      movie_view: pd.DataFrame, labeler: str) -> dict:
    """`write_poster_views` from stage 05's objects: the dictionary, the labels and the two profiles."""
    path = Path(report_dir) / "summary.json"
    summary = artifacts.read_json(path) if path.exists() else {}
    names = dict(zip(labels["latent"].astype(int), labels["name"].astype(str)))
    generic = np.flatnonzero(d.generic)
    return write_poster_views(report_dir, summary, top_items_of(d), user_view, movie_view, names, generic,
                              item_frame(d), labeler, np.setdiff1d(d.live, generic),
                              titled=bool(d.meta.get("has_titles")))
