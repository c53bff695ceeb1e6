"""A self-contained HTML concept browser: one file, no server, no network, no external JS/CSS/fonts.

`write_browser` embeds the concept dictionaries (the DataFrames of `concepts.dictionary_tables`), the
labels, the detection scores and the per-user / per-item concept tables as gzip-compressed JSON (base64 in
a non-executable `<script>` block; the page inflates it with DecompressionStream) and a small vanilla-JS
program renders them. The page's template, style sheet and script are package data
(`recsae_utils/browser_assets/`), read with importlib.resources. It works when opened from disk (file://).

What the page offers (words such as "movie" / "genre" come from the dataset: `noun`, `genre_noun`)
- `#search`: finds concepts by label text (name, then description), by latent id ("12", "#12"), by item id
  ("2620", "item 2620") or by title: an item lists the latents whose top items include it, best first
  (the item's rank in the latent's list by shrunk lift, then its count, then latent id) among the latents
  that show it in their top items by count or by strength. Results are `li.result[data-latent]`; a click
  or Enter opens the card. Enter in the box opens the first result.
- `#card` (main pane): label (name, description, labeler), firing frequency, top items by activation
  count and by strength (with lift), genre (category) and decade mix with enrichment (inline CSS bars),
  promoted items (output side), flags (generic / popularity / dead) and detection scores.
- `#user-q` (user id) and `#movie-q` (item id or title): a user's top latents with values, an item's top
  latents by total strength (`#profile`, in the main pane in place of the card; rows
  `li.profile-row[data-latent]` open the card, which then offers a way back).
- `#pg-*` (the steering playground, when `playground` data is given; `playground.py` and playground.js):
  pick a user by id or type a history by title, add concepts by label search, one dose slider each (a
  multiple of the median ||h_u||), and the top 10 after the edit with where each item ranked before and the
  KL of the catalogue softmax; the page redoes `interventions.recommend` (and SASRec for a typed history).
- The URL hash drives it too, exactly like typing: `#q=<query>` (search, then open the first result),
  `#latent=<j>`, `#user=<id>`, `#item=<id or title>` (also `#movie=`), `#playground=<user id>`.

Security: every text from the data is rendered with textContent / createTextNode (the script never uses
innerHTML); the payload is base64 (or, with compress=False, JSON whose `<`, `>`, `&`, U+2028 and U+2029
are \\uXXXX escapes), so no data can close the script tag or open a comment; a Content-Security-Policy
allows only the page's own inline script (by its SHA-256) and no network requests.

Inputs (all optional but `tables`, extra columns ignored):
- tables: 'latents', 'latent_items', 'genre_enrichment', 'decade_enrichment', 'promoted' as made by
  `concepts.dictionary_tables`; an optional 'items' table (item_id, title[, genres]) gives titles.
- labels: `labeling.label_latents` output (latent, name, description, labeler) or a {latent: name | dict}
  mapping; without it the 'label' column of tables['latents'] is used.
- scores: one row per latent (latent + numeric columns, e.g. `concepts.detection_scores` or the judge).
- users: `concepts.instance_concepts`-style rows keyed by a user column ('user', 'user_id', or
  'instance'), with 'latent' and a value column ('activation', 'value' or 'strength'); when the rows
  hold several instances of a user (an 'instance' column), the latest (largest) instance is shown.
- movies: `concepts.item_concepts` rows (item_id, latent, strength[, share]).
- items (keyword): the dataset's items table (item_id[, title, genres or i_category]): titles, the item
  count the page states, and the genres (category) shown with an item; titles are also taken from a
  'title' column of latent_items / promoted / movies when present.
"""
from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import artifacts
from .yardstick import IO_DISAGREE

MAX_ITEMS = 20        # per latent and per ordering (count, strength): the union is kept
MAX_GENRES = 10       # genre rows per latent (those present in its top slots, largest share first)
MAX_DECADES = 12      # decade rows per latent
DESC_CHARS = 480      # a description is cut (at a '; ' or '. ') after this many characters: the offline
                      # labels' exemplar lists repeat the card's item table, and the page has a size budget;
                      # labels.csv keeps every description whole
MAX_PROFILE = 10      # latents per user / per movie
SIG_DIGITS = 4        # significant digits of floats in the JSON
PLAYGROUND_BUDGET_MB = 4.0   # a page with the steering playground stays within this (issue 25); over it, the
                             # page is written without the playground (said on the console)

USER_COLUMNS = ("user", "user_id", "instance")
VALUE_COLUMNS = ("activation", "value", "strength")


# ----------------------------------------------------------------------------------------------------
# Data -> JSON-ready dict


def _sig(x: Any, digits: int = SIG_DIGITS) -> float | None:
    """Round to `digits` significant digits; NaN/inf/None -> None (JSON null)."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    if f == 0:
        return 0.0
    r = float(f"{f:.{digits}g}")
    return int(r) if r.is_integer() and abs(r) < 2 ** 53 else r


def _text(x: Any) -> str | None:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return None
    s = str(x)
    return s if s != "" else None


def _genre_text(g: Any) -> str:
    if g is None or (isinstance(g, float) and math.isnan(g)):
        return ""
    if isinstance(g, str):
        return g
    try:
        return "|".join(str(x) for x in g)
    except TypeError:
        return str(g)


def _item_texts(tables: Mapping[str, pd.DataFrame], movies: pd.DataFrame | None,
                items: pd.DataFrame | None, genre_noun: str) -> dict[int, list]:
    """item id -> [title or None, note]: the title from the first source that has one (None when it is
    only the page's own fallback "item <id>"); the note is the genres text, or "<genre_noun> <category>"
    for datasets whose items carry an 'i_category' instead of genres."""
    out: dict[int, list] = {}
    sources = [items, tables.get("items"), tables.get("latent_items"), tables.get("promoted"), movies]
    for df in sources:
        if df is None or "item_id" not in df.columns:
            continue
        sub = df.drop_duplicates("item_id")
        n = len(sub)
        tit = sub["title"].tolist() if "title" in sub.columns else [None] * n
        if "genres" in sub.columns:
            notes = [_genre_text(g) for g in sub["genres"].tolist()]
        elif "i_category" in sub.columns:
            notes = [f"{genre_noun} {c}" if _text(c) is not None else "" for c in sub["i_category"].tolist()]
        else:
            notes = [""] * n
        for i, t, g in zip(sub["item_id"].tolist(), tit, notes):
            i = int(i)
            t = _text(t)
            if t == f"item {i}":
                t = None
            rec = out.setdefault(i, [None, ""])
            if rec[0] is None and t is not None:
                rec[0] = t
            if not rec[1] and g:
                rec[1] = g
    return out


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"


def _label_rows(labels, latents: pd.DataFrame | None, m: int) -> dict[int, list]:
    """latent -> [name, description, labeler] (None where unknown)."""
    out: dict[int, list] = {}
    if latents is not None and "label" in latents.columns:
        for j, lab in zip(latents["latent"].tolist(), latents["label"].tolist()):
            t = _text(lab)
            if t is not None:
                out[int(j)] = [t, None, None]
    if labels is None:
        return out
    if isinstance(labels, pd.DataFrame):
        name_col = "name" if "name" in labels.columns else "label" if "label" in labels.columns else None
        if name_col is None or "latent" not in labels.columns:
            raise ValueError("labels needs columns 'latent' and 'name' (or 'label')")
        desc = labels["description"].tolist() if "description" in labels.columns else [None] * len(labels)
        who = labels["labeler"].tolist() if "labeler" in labels.columns else [None] * len(labels)
        rows = zip(labels["latent"].tolist(), labels[name_col].tolist(), desc, who)
    else:
        it = labels.items() if isinstance(labels, Mapping) else enumerate(labels)
        rows = []
        for j, lab in it:
            if isinstance(lab, Mapping):
                rows.append((j, lab.get("name"), lab.get("description"), lab.get("labeler")))
            else:
                rows.append((j, lab, None, None))
    for j, name, d, who in rows:
        name = _text(name)
        if name is None:  # a failed label keeps the default
            continue
        out[int(j)] = [name, _short(_text(d)), _text(who)]
    return out


def _short(text: str | None, limit: int = DESC_CHARS) -> str | None:
    """`text` cut after `limit` characters at the last '; ' or '. ' before it, marked with '…'."""
    if text is None or len(text) <= limit:
        return text
    cut = max(text.rfind("; ", 0, limit), text.rfind(". ", 0, limit))
    return text[:cut if cut > limit // 2 else limit].rstrip(" ;.") + " …"


def _top_rows(li: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each latent's rows among its top k by count or by strength (what the card shows), in the table's
    rank order (shrunk lift; `concepts.item_tables`). Without count/strength columns: the top k by rank."""
    li = li.copy()
    if "rank" not in li.columns:
        li["rank"] = li.groupby("latent").cumcount() + 1
    by = [c for c in ("count", "strength") if c in li.columns]
    if not by:
        keep = li["rank"].to_numpy() <= k
    else:
        keep = np.zeros(len(li), bool)
        for col in by:
            o = li.sort_values(["latent", col, "rank"], ascending=[True, False, True], kind="stable")
            pos = o.groupby("latent").cumcount()
            keep |= (pos < k).reindex(li.index).to_numpy()
    return li[keep].sort_values(["latent", "rank"], kind="stable")


def _group_lists(df: pd.DataFrame, key: str, cols: list[str], digits: dict[str, int | None]) -> dict[int, list]:
    """{key value: [[col values...], ...]} preserving row order; floats rounded (None = keep int)."""
    if df is None or len(df) == 0:
        return {}
    arrays = []
    for c in cols:
        if c not in df.columns:
            arrays.append([None] * len(df))
        elif digits.get(c) is None:
            arrays.append([None if v is None else int(v) for v in df[c].tolist()])
        else:
            arrays.append([_sig(v, digits[c]) for v in df[c].tolist()])
    out: dict[int, list] = {}
    for k, *vals in zip(df[key].tolist(), *arrays):
        out.setdefault(int(k), []).append(list(vals))
    return out


def _enrich_lists(df: pd.DataFrame | None, key: str, max_rows: int, index: dict | None) -> dict[int, list]:
    """latent -> [[feature, share_top, share_all, log2 odds ratio, significant 0/1], ...]."""
    if df is None or len(df) == 0:
        return {}
    e = df.copy()
    if "top_count" in e.columns:
        e = e[(e["top_count"] > 0) | e.get("significant", False)]
    if "share_top" not in e.columns:
        return {}
    e = e.sort_values(["latent", "share_top"], ascending=[True, False], kind="stable")
    e = e.groupby("latent", sort=False).head(max_rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        l2 = np.log2(e["odds_ratio"].to_numpy(dtype=np.float64)) if "odds_ratio" in e.columns else np.full(len(e), np.nan)
    sig = e["significant"].astype(bool).tolist() if "significant" in e.columns else [False] * len(e)
    out: dict[int, list] = {}
    for j, f, st, sa, lo, s in zip(e["latent"].tolist(), e[key].tolist(), e["share_top"].tolist(),
                                   e["share_all"].tolist() if "share_all" in e.columns else [None] * len(e),
                                   l2.tolist(), sig):
        feat = index.setdefault(str(f), len(index)) if index is not None else int(f)
        out.setdefault(int(j), []).append([feat, _sig(st, 3), _sig(sa, 3), _sig(lo, 3), int(bool(s))])
    return out


def _first_col(df: pd.DataFrame, names: tuple[str, ...], what: str) -> str:
    for c in names:
        if c in df.columns:
            return c
    raise ValueError(f"{what}: need one of the columns {list(names)}, got {list(df.columns)}")


def _profile_order(df: pd.DataFrame, key: str, vcol: str, max_profile: int) -> tuple[pd.DataFrame, list[bool]]:
    """A profile's rows as the page lists them, and which are background. With a `group` column
    (`specificity`: 'specific' | 'background', ranked within it by 'rank'), the table's specific-first
    order, up to max_profile rows per group; without it, largest value first."""
    if "group" in df.columns and "rank" in df.columns:
        d = df.assign(_bg=(df["group"] == "background").to_numpy())
        d = d.sort_values([key, "_bg", "rank"], kind="stable").drop_duplicates([key, "latent"])
        d = d.groupby([key, "_bg"], sort=False).head(max_profile)
        return d, d["_bg"].tolist()
    d = df.sort_values([key, vcol], ascending=[True, False], kind="stable").drop_duplicates([key, "latent"])
    d = d.groupby(key, sort=False).head(max_profile)
    return d, [False] * len(d)


def browser_data(tables: Mapping[str, pd.DataFrame], labels=None, scores: pd.DataFrame | None = None,
                 users: pd.DataFrame | None = None, movies: pd.DataFrame | None = None, title: str = "",
                 items: pd.DataFrame | None = None, max_items: int = MAX_ITEMS,
                 max_profile: int = MAX_PROFILE, noun: str = "movie", genre_noun: str = "genre",
                 steering: Mapping[int, Mapping] | None = None, playground: Mapping | None = None) -> dict:
    """The JSON-ready dict the page renders (see the module docstring for the inputs). `steering`: latent ->
    {user, beta, before: [item ids], after: [item ids]} (`interventions.browser_examples`), shown on its card.
    `playground`: `playground.playground_data` output; the page then carries every item's title (any item
    can enter a steered top 10)."""
    lat_df = tables.get("latents")
    li = tables.get("latent_items")
    if lat_df is None and li is None:
        raise ValueError("tables needs at least 'latents' or 'latent_items' (concepts.dictionary_tables)")
    if lat_df is not None:
        ids = lat_df["latent"].astype(np.int64).tolist()
    else:
        ids = sorted(int(x) for x in li["latent"].unique())
    m = (max(ids) + 1) if ids else 0
    lab = _label_rows(labels, lat_df, m)
    for w in (noun, genre_noun):
        if not isinstance(w, str) or not w.strip():
            raise ValueError(f"noun and genre_noun must be non-empty words, got {noun!r} and {genre_noun!r}")
    titles = _item_texts(tables, movies, items, genre_noun)

    # per-latent scalar columns
    stat_cols = {"n_fire": ("nf", None), "freq": ("f", 4), "mean_act": ("ma", 4), "max_act": ("mx", 4),
                 "n_top": ("nt", None), "pop_spearman": ("sp", 3), "popularity_pct": ("pp", 3),
                 "coverage": ("cov", 3), "io_overlap": ("io", 2)}
    lat: dict[int, dict] = {j: {"id": j} for j in ids}
    if lat_df is not None:
        for col, (short, dig) in stat_cols.items():
            if col not in lat_df.columns:
                continue
            for j, v in zip(ids, lat_df[col].tolist()):
                lat[j][short] = (None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)) \
                    if dig is None else _sig(v, dig)
        for col, short in (("generic", "gen"), ("popularity", "pop")):
            if col in lat_df.columns:
                for j, v in zip(ids, lat_df[col].tolist()):
                    if bool(v):
                        lat[j][short] = 1
    for j, (name, desc, who) in lab.items():
        if j in lat:
            lat[j]["nm"] = name
            if desc:
                lat[j]["ds"] = desc
            if who:
                lat[j]["lb"] = who

    # top items (union of the top by lift rank, count and strength)
    if li is not None and len(li):
        top = _top_rows(li, max_items)
        for j, rows in _group_lists(top, "latent", ["item_id", "rank", "count", "strength", "lift"],
                                    {"item_id": None, "rank": None, "count": None, "strength": SIG_DIGITS,
                                     "lift": 3}).items():
            if j in lat:
                lat[j]["it"] = rows
    genre_index: dict[str, int] = {}
    for j, rows in _enrich_lists(tables.get("genre_enrichment"), "genre", MAX_GENRES, genre_index).items():
        if j in lat:
            lat[j]["ge"] = rows
    for j, rows in _enrich_lists(tables.get("decade_enrichment"), "decade", MAX_DECADES, None).items():
        if j in lat:
            lat[j]["de"] = sorted(rows)
    pr = tables.get("promoted")
    if pr is not None and len(pr):
        pr = pr.sort_values(["latent", "rank"] if "rank" in pr.columns else ["latent"], kind="stable")
        pr = pr.groupby("latent", sort=False).head(max_items)
        for j, rows in _group_lists(pr, "latent", ["item_id", "score"], {"item_id": None, "score": 3}).items():
            if j in lat:
                lat[j]["pr"] = rows

    # scores
    score_cols: list[str] = []
    if scores is not None and len(scores):
        if "latent" not in scores.columns:
            raise ValueError("scores needs a 'latent' column")
        preferred = ["bal_acc_random", "auc_random", "bal_acc_matched", "auc_matched", "confidence", "recall",
                     "specificity", "interpretable", "n_pos", "n_neg"]
        numeric = [c for c in scores.columns if c != "latent"
                   and (pd.api.types.is_numeric_dtype(scores[c]) or pd.api.types.is_bool_dtype(scores[c]))]
        score_cols = [c for c in preferred if c in numeric] + [c for c in numeric if c not in preferred]
        sc = scores.drop_duplicates("latent", keep="last")
        vals = [[_sig(v, 3) for v in sc[c].astype(np.float64).tolist()] for c in score_cols]
        for k, j in enumerate(sc["latent"].astype(np.int64).tolist()):
            if j in lat:
                lat[j]["sc"] = [v[k] for v in vals]

    # users and movies
    user_map: dict[str, list] = {}
    if users is not None and len(users):
        ucol = _first_col(users, USER_COLUMNS, "users")
        vcol = _first_col(users, VALUE_COLUMNS, "users")
        u = users
        if ucol != "instance" and "instance" in u.columns:   # several instances per user: the latest one
            u = u[u["instance"] == u.groupby(ucol)["instance"].transform("max")]
        u, bg = _profile_order(u, ucol, vcol, max_profile)
        for uid, lj, v, b in zip(u[ucol].tolist(), u["latent"].astype(np.int64).tolist(), u[vcol].tolist(), bg):
            user_map.setdefault(str(uid), []).append([lj, _sig(v)] + ([1] if b else []))
    movie_map: dict[str, list] = {}
    if movies is not None and len(movies):
        vcol = _first_col(movies, ("strength", "activation", "value"), "movies")
        mv, bg = _profile_order(movies, "item_id", vcol, max_profile)
        share = mv["share"].tolist() if "share" in mv.columns else [None] * len(mv)
        for i, lj, v, s, b in zip(mv["item_id"].astype(np.int64).tolist(), mv["latent"].astype(np.int64).tolist(),
                                  mv[vcol].tolist(), share, bg):
            movie_map.setdefault(str(i), []).append([lj, _sig(v), _sig(s, 3)] + ([1] if b else []))

    # only the items the page can show
    used: set[int] = set()
    for rec in lat.values():
        used.update(r[0] for r in rec.get("it", []))
        used.update(r[0] for r in rec.get("pr", []))
    used.update(int(i) for i in movie_map)
    for j, ex in (steering or {}).items():
        if int(j) in lat:
            lat[int(j)]["st"] = {"u": _text(ex["user"]), "b": _sig(ex.get("beta", 1.0)),
                                 "bf": [int(i) for i in ex["before"]], "af": [int(i) for i in ex["after"]]}
            used.update(lat[int(j)]["st"]["bf"] + lat[int(j)]["st"]["af"])
    if playground is not None:
        used.update(range(1, int(playground["n_items"])))
    item_map = {str(i): titles.get(i, [None, ""]) for i in sorted(used)}
    # the dataset's item count (not just the items the page shows)
    catalogue = items if items is not None else tables.get("items")
    n_items = int(catalogue["item_id"].nunique()) if catalogue is not None and "item_id" in catalogue.columns \
        else len(set(titles) | used)

    out = {
        "title": title or "Concept browser", "n_latents": len(ids),
        "n_live": int(sum(1 for r in lat.values() if (r.get("nf") or 0) > 0 or "it" in r)),
        "has_stats": lat_df is not None, "genres": list(genre_index), "score_cols": score_cols,
        "io_disagree": IO_DISAGREE, "items": item_map, "latents": [lat[j] for j in ids], "users": user_map, "movies": movie_map,
        "n_items": n_items, "words": {"item": noun, "items": _plural(noun), "genre": genre_noun,
                                      "genres": _plural(genre_noun)},
    }
    if playground is not None:
        out["pg"] = dict(playground)
    return out


# ----------------------------------------------------------------------------------------------------
# HTML


def embed_json(obj: Any) -> str:
    """JSON text that is safe inside <script type="application/json">: '<', '>', '&' and the JS line
    separators become \\uXXXX escapes (inside JSON strings, the only place they can occur), so the text
    can contain neither '</script' nor '<!--'. NaN / inf are not JSON: pass None instead."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s


ASSET_DIR = "browser_assets"   # package data: the page's template, style sheet and scripts
SCRIPTS = ("playground.js", "browser.js")   # one inline script, in this order (browser.js starts the page)


@functools.lru_cache(maxsize=None)
def asset(name: str) -> str:
    """One of the page's files (browser.html, browser.css, SCRIPTS), read from the installed package."""
    text = resources.files(__package__).joinpath(ASSET_DIR).joinpath(name).read_text(encoding="utf-8")
    if name != "browser.html" and re.search(r"</(script|style)", text, re.I):  # would end it early
        raise ValueError(f"{ASSET_DIR}/{name} must not contain '</script' or '</style'")
    return text


def encode_payload(data: dict) -> str:
    """gzip (fixed mtime, so the same data gives the same page) then base64: the page inflates it with
    DecompressionStream. Base64 has no character that can end a script or start markup."""
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def render_html(data: dict, compress: bool = True) -> str:
    """The page for `browser_data` output: the data gzip+base64 (compress) or as escaped JSON."""
    js = "\n".join(asset(name) for name in SCRIPTS)
    script_hash = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{script_hash}'; style-src 'unsafe-inline'; "
           "img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")
    values = {"csp": csp, "title": html.escape(str(data.get("title", ""))), "css": asset("browser.css"), "js": js,
              "data_type": "application/octet-stream" if compress else "application/json",
              "encoding": "gzip-base64" if compress else "json",
              "data": encode_payload(data) if compress else embed_json(data)}
    # one pass over the template: a placeholder-like text inside the values is never expanded
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], asset("browser.html"))


def write_browser(path, tables: dict[str, pd.DataFrame], labels: pd.DataFrame | None = None,
                  scores: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
                  movies: pd.DataFrame | None = None, title: str = "Concept browser", *,
                  items: pd.DataFrame | None = None, max_items: int = MAX_ITEMS, noun: str | None = None,
                  genre_noun: str | None = None, compress: bool = True,
                  steering: Mapping[int, Mapping] | None = None, playground: Mapping | None = None,
                  playground_budget_mb: float = PLAYGROUND_BUDGET_MB) -> Path:
    """Write the single-file HTML concept browser to `path` (atomically) and return the path.

    noun / genre_noun: the dataset's words for an item and for its genre-like attribute; None = from `items`
    ("movie" / "genre" when it has titles, else "item" / "category", as for Grocery). compress=False embeds
    plain JSON (larger; readable without DecompressionStream). playground: `playground.playground_data`
    output; a page that would be larger than `playground_budget_mb` with it is written without it, and the
    console says so (its arrays grow with the catalogue: Grocery's item table alone is over 1 MB)."""
    titled = items is None or "title" in items.columns
    noun = noun or ("movie" if titled else "item")
    genre_noun = genre_noun or ("genre" if titled else "category")
    data = browser_data(tables, labels, scores, users, movies, title, items=items, max_items=max_items,
                        noun=noun, genre_noun=genre_noun, steering=steering, playground=playground)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(data, compress=compress).encode("utf-8", errors="replace")
    if playground is not None and len(text) > playground_budget_mb * 1e6:
        print(f"concept browser: the steering playground is left out of {path.name}: with it the page would be "
              f"{len(text) / 1e6:.2f} MB, over the {playground_budget_mb:g} MB budget")
        return write_browser(path, tables, labels, scores, users, movies, title, items=items, max_items=max_items,
                             noun=noun, genre_noun=genre_noun, compress=compress, steering=steering)
    with artifacts.atomic_path(path) as tmp:
        Path(tmp).write_bytes(text)
        Path(tmp).chmod(0o644)   # a page to share and open, not a private temp file
    return path
