"""A self-contained HTML concept browser: one file, no server, no network, no external JS/CSS/fonts.

`write_browser` embeds the concept dictionaries (the DataFrames of `concepts.dictionary_tables`), the
labels, the detection scores and the per-user / per-movie concept tables as JSON in a
`<script type="application/json">` block; a small vanilla-JS program renders them. It works when opened
from disk (file://).

What the page offers
- `#search`: finds concepts by label text (name, then description), by latent id ("12", "#12") or by movie
  title: a title lists the latents whose top movies include it, best first (the movie's rank in the
  latent's list by shrunk lift, then its count, then latent id) among the latents that show it in their
  top movies by count or by strength. Results are `li.result[data-latent]`; a click or Enter
  opens the card. Enter in the box opens the first result.
- `#card`: label (name, description, labeler), firing frequency, top movies by activation count and by
  strength (with lift), genre and decade mix with enrichment (inline CSS bars), promoted items (output
  side), flags (generic / popularity / dead) and detection scores.
- `#user-q` (user id) and `#movie-q` (title): a user's top latents with values, a movie's top latents by
  total strength (`#profile`, rows `li.profile-row[data-latent]`).
- The URL hash drives it too, exactly like typing: `#q=<query>` (search, then open the first result),
  `#latent=<j>`, `#user=<id>`, `#movie=<title>`.

Security: every text from the data is rendered with textContent / createTextNode (the script never uses
innerHTML); the embedded JSON escapes `<`, `>`, `&`, U+2028 and U+2029 as \\uXXXX, so no data can close
the script tag or open a comment; a Content-Security-Policy allows only the page's own inline script
(by its SHA-256) and no network requests.

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
- items (keyword): the dataset's items table (item_id, title, genres) for titles; titles are also taken
  from a 'title' column of latent_items / promoted / movies when present.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import artifacts

MAX_ITEMS = 20        # per latent and per ordering (count, strength): the union is kept
MAX_GENRES = 10       # genre rows per latent (those present in its top slots, largest share first)
MAX_DECADES = 12      # decade rows per latent
MAX_PROFILE = 10      # latents per user / per movie
SIG_DIGITS = 4        # significant digits of floats in the JSON

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


def _titles(tables: Mapping[str, pd.DataFrame], movies: pd.DataFrame | None,
            items: pd.DataFrame | None) -> dict[int, list]:
    """item id -> [title, genres text] from every source that has titles (later sources fill gaps)."""
    out: dict[int, list] = {}
    sources = [items, tables.get("items"), tables.get("latent_items"), tables.get("promoted"), movies]
    for df in sources:
        if df is None or "item_id" not in df.columns or "title" not in df.columns:
            continue
        sub = df.drop_duplicates("item_id")
        gen = sub["genres"].tolist() if "genres" in sub.columns else [None] * len(sub)
        for i, t, g in zip(sub["item_id"].tolist(), sub["title"].tolist(), gen):
            i = int(i)
            t = _text(t)
            if t is not None and i not in out:
                out[i] = [t, _genre_text(g)]
    return out


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
        out[int(j)] = [name, _text(d), _text(who)]
    return out


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


def browser_data(tables: Mapping[str, pd.DataFrame], labels=None, scores: pd.DataFrame | None = None,
                 users: pd.DataFrame | None = None, movies: pd.DataFrame | None = None, title: str = "",
                 items: pd.DataFrame | None = None, max_items: int = MAX_ITEMS,
                 max_profile: int = MAX_PROFILE) -> dict:
    """The JSON-ready dict the page renders (see the module docstring for the inputs)."""
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
    titles = _titles(tables, movies, items)

    # per-latent scalar columns
    stat_cols = {"n_fire": ("nf", None), "freq": ("f", 4), "mean_act": ("ma", 4), "max_act": ("mx", 4),
                 "n_top": ("nt", None), "pop_spearman": ("sp", 3), "popularity_pct": ("pp", 3),
                 "coverage": ("cov", 3)}
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
        u = u.sort_values([ucol, vcol], ascending=[True, False], kind="stable").drop_duplicates([ucol, "latent"])
        u = u.groupby(ucol, sort=False).head(max_profile)
        for uid, lj, v in zip(u[ucol].tolist(), u["latent"].astype(np.int64).tolist(), u[vcol].tolist()):
            user_map.setdefault(str(uid), []).append([lj, _sig(v)])
    movie_map: dict[str, list] = {}
    if movies is not None and len(movies):
        vcol = _first_col(movies, ("strength", "activation", "value"), "movies")
        mv = movies.sort_values(["item_id", vcol], ascending=[True, False], kind="stable")
        mv = mv.groupby("item_id", sort=False).head(max_profile)
        share = mv["share"].tolist() if "share" in mv.columns else [None] * len(mv)
        for i, lj, v, s in zip(mv["item_id"].astype(np.int64).tolist(), mv["latent"].astype(np.int64).tolist(),
                               mv[vcol].tolist(), share):
            movie_map.setdefault(str(i), []).append([lj, _sig(v), _sig(s, 3)])

    # only the items the page can show
    used: set[int] = set()
    for rec in lat.values():
        used.update(r[0] for r in rec.get("it", []))
        used.update(r[0] for r in rec.get("pr", []))
    used.update(int(i) for i in movie_map)
    item_map = {str(i): titles.get(i, [f"item {i}", ""]) for i in sorted(used)}

    return {
        "title": title or "Concept browser", "n_latents": len(ids),
        "n_live": int(sum(1 for r in lat.values() if (r.get("nf") or 0) > 0 or "it" in r)),
        "has_stats": lat_df is not None, "genres": list(genre_index), "score_cols": score_cols,
        "items": item_map, "latents": [lat[j] for j in ids], "users": user_map, "movies": movie_map,
    }


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


_CSS = """
:root{--fg:#1d1d1f;--muted:#666;--line:#ddd;--accent:#1f6fb2;--bar:#4c8dc9;--base:#bbb;--hit:#fff3c4;
 font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg)}
body{margin:0;background:#fafafa}
header{padding:10px 18px;background:#fff;border-bottom:1px solid var(--line)}
header h1{font-size:18px;margin:0}
#meta{color:var(--muted);font-size:12px;margin-top:2px}
main{display:flex;gap:16px;padding:12px 18px;align-items:flex-start}
#side{flex:0 0 360px;max-width:360px}
#card{flex:1;min-width:0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:12px 16px}
input{font:inherit;width:100%;box-sizing:border-box;padding:6px 8px;border:1px solid #bbb;border-radius:4px}
#search{font-size:15px}
.panel{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px;margin-bottom:12px}
.panel h2{font-size:13px;margin:0 0 6px 0;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
#result-info,.note{color:var(--muted);font-size:12px;margin:6px 0}
ol.list{list-style:none;margin:0;padding:0;max-height:46vh;overflow:auto}
.result,.profile-row,.movie-choice{padding:4px 6px;border-bottom:1px solid #eee;cursor:pointer;font-size:13px}
.result:hover,.profile-row:hover,.movie-choice:hover,.result:focus{background:#eef5fc;outline:none}
.result.active{background:#dcebf8}
.rid{color:var(--accent);font-weight:600;margin-right:6px}
.why{display:block;color:var(--muted);font-size:11px}
#card h2{margin:0 0 4px 0;font-size:18px}
#card h3{font-size:13px;margin:14px 0 4px 0;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
#card-desc{margin:4px 0}
#card-labeler,#card-stats{color:var(--muted);font-size:12px}
.flag{display:inline-block;font-size:11px;padding:1px 6px;border-radius:9px;margin-right:4px;background:#eee}
.flag.generic{background:#fde2c8}.flag.popularity{background:#e3d7f7}.flag.dead{background:#f6c6c6}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{text-align:left;padding:2px 6px;border-bottom:1px solid #f0f0f0;vertical-align:middle}
th{color:var(--muted);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.hit td{background:var(--hit)}
.cols{display:flex;gap:16px;flex-wrap:wrap}.cols>div{flex:1 1 320px;min-width:0}
.bar{position:relative;height:10px;background:#f1f1f1;border-radius:2px;min-width:60px}
.bar .fill{position:absolute;left:0;top:0;bottom:0;background:var(--bar);border-radius:2px}
.bar .base{position:absolute;top:-2px;bottom:-2px;width:2px;background:#333}
.bar .fill.neg{background:#d9825b}
.sig{color:#b22;font-weight:700}
.good{color:#176c2e;font-weight:600}
.score-grid{display:flex;flex-wrap:wrap;gap:4px 6px}
.score{font-size:12px;border:1px solid #e4e4e4;border-radius:4px;padding:1px 6px;white-space:nowrap}
.score .k{color:var(--muted);margin-right:5px}.score .v{font-variant-numeric:tabular-nums}
#profile h3{font-size:14px;margin:10px 0 4px 0}
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("recsae-data").textContent);
  var LAT = {};
  D.latents.forEach(function (l) { LAT[l.id] = l; });
  var $ = function (id) { return document.getElementById(id); };

  // DOM helpers: text is always set with createTextNode / textContent, never parsed as HTML
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.appendChild(document.createTextNode(String(text)));
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function fmt(x, d) {
    if (x === null || x === undefined) return "–";
    if (typeof x !== "number") return String(x);
    if (Number.isInteger(x)) return String(x);
    return x.toFixed(d === undefined ? 2 : d);
  }
  function pct(x, d) { return (x === null || x === undefined) ? "–" : (100 * x).toFixed(d === undefined ? 1 : d) + "%"; }
  function norm(s) {
    s = String(s).toLowerCase();
    if (s.normalize) s = s.normalize("NFD").replace(/[\u0300-\u036f]/g, "");
    return s.replace(/\s+/g, " ").trim();
  }
  function title(i) { var t = D.items[String(i)]; return t ? t[0] : "item " + i; }
  function name(j) { var l = LAT[j]; return (l && l.nm) ? l.nm : "latent " + j; }
  function bar(frac, baseFrac, neg) {
    var b = el("div", "bar"), f = el("div", "fill" + (neg ? " neg" : ""));
    f.style.width = Math.max(0, Math.min(1, frac || 0)) * 100 + "%";
    b.appendChild(f);
    if (baseFrac !== null && baseFrac !== undefined) {
      var m = el("div", "base");
      m.style.left = "calc(" + Math.max(0, Math.min(1, baseFrac)) * 100 + "% - 1px)";
      m.title = "all histories: " + pct(baseFrac);
      b.appendChild(m);
    }
    return b;
  }
  function td(text, cls) { return el("td", cls, text); }
  function tdBar(frac) { var c = el("td"); c.appendChild(bar(frac)); return c; }
  function headRow(tbl, cols) {
    var tr = el("tr");
    cols.forEach(function (c) { tr.appendChild(el("th", null, c)); });
    var th = el("thead"); th.appendChild(tr); tbl.appendChild(th);
  }

  // movie title index: normalised title -> ids; item -> latents whose top movies include it
  var TITLES = Object.keys(D.items).map(function (k) { return [Number(k), norm(D.items[k][0])]; });
  var HITS = {};
  D.latents.forEach(function (l) {
    (l.it || []).forEach(function (r) {
      (HITS[r[0]] = HITS[r[0]] || []).push({ j: l.id, rank: r[1], count: r[2], strength: r[3], lift: r[4] });
    });
  });
  function byHit(a, b) {
    return (a.rank - b.rank) || ((b.count || 0) - (a.count || 0)) || (a.j - b.j);
  }
  Object.keys(HITS).forEach(function (k) { HITS[k].sort(byHit); });
  function matchTitles(q, onlyWithHits) {  // [[item, quality]] best first (0 exact, 1 prefix, 2 substring)
    var out = [];
    TITLES.forEach(function (t) {
      if (onlyWithHits && !HITS[t[0]] && !D.movies[String(t[0])]) return;
      var p = t[1].indexOf(q);
      if (p < 0) return;
      var noYear = t[1].replace(/\s*\(\d{4}\)\s*$/, "");
      var qual = (t[1] === q || noYear === q) ? 0 : (p === 0 ? 1 : 2);
      out.push([t[0], qual, t[1]]);
    });
    out.sort(function (a, b) { return (a[1] - b[1]) || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : a[0] - b[0]); });
    return out;
  }

  // ---------------------------------------------------------------- search
  var current = [], highlightItem = null;
  function search(raw) {
    var q = norm(raw || ""), res = [], seen = {};
    function add(j, tier, key, why, item) {
      if (seen[j] !== undefined || !LAT[j]) return;
      seen[j] = res.length;
      res.push({ j: j, tier: tier, key: key, why: why, item: item });
    }
    if (!q) {
      D.latents.filter(function (l) { return (l.nf || 0) > 0 || l.it; })
        .sort(function (a, b) { return ((b.f || 0) - (a.f || 0)) || (a.id - b.id); })
        .slice(0, 100).forEach(function (l) { add(l.id, 0, [0], "fires on " + pct(l.f)); });
      return res;
    }
    var m = /^(?:#|latent\s*)?(\d+)$/.exec(q);
    if (m) add(Number(m[1]), 0, [0], "latent id");
    var tier1 = [], tier3 = [];
    D.latents.forEach(function (l) {
      if (l.nm && norm(l.nm).indexOf(q) >= 0) tier1.push(l);
      else if (l.ds && norm(l.ds).indexOf(q) >= 0) tier3.push(l);
    });
    var byFreq = function (a, b) { return ((b.f || 0) - (a.f || 0)) || (a.id - b.id); };
    tier1.sort(byFreq).forEach(function (l) { add(l.id, 1, [], "label matches"); });
    var hits = [];
    matchTitles(q, true).slice(0, 50).forEach(function (t) {
      (HITS[t[0]] || []).forEach(function (h) { hits.push({ qual: t[1], item: t[0], h: h }); });
    });
    hits.sort(function (a, b) { return (a.qual - b.qual) || byHit(a.h, b.h); });
    hits.forEach(function (x) {
      add(x.h.j, 2, [], "top movie #" + x.h.rank + ": " + title(x.item) + " (count " + fmt(x.h.count) +
          ", lift " + fmt(x.h.lift, 1) + ")", x.item);
    });
    tier3.sort(byFreq).forEach(function (l) { add(l.id, 3, [], "description matches"); });
    return res;
  }
  function showResults(raw) {
    current = search(raw);
    var ol = $("results");
    clear(ol);
    var shown = current.slice(0, 200);
    shown.forEach(function (r, k) {
      var li = el("li", "result");
      li.setAttribute("data-latent", String(r.j));
      li.setAttribute("data-rank", String(k + 1));
      li.tabIndex = 0;
      li.appendChild(el("span", "rid", "#" + r.j));
      li.appendChild(el("span", "rlabel", name(r.j)));
      li.appendChild(el("span", "why", r.why));
      li.addEventListener("click", function () { openCard(r.j, r.item); });
      li.addEventListener("keydown", function (ev) { if (ev.key === "Enter") openCard(r.j, r.item); });
      ol.appendChild(li);
    });
    var q = (raw || "").trim();
    $("result-info").textContent = q
      ? current.length + " concept" + (current.length === 1 ? "" : "s") + " for \u201c" + q + "\u201d" +
        (current.length > shown.length ? " (first " + shown.length + " shown)" : "")
      : "Most frequent concepts (type a label word, a latent id or a movie title)";
    return current;
  }
  function openFirst() { if (current.length) openCard(current[0].j, current[0].item); }

  // ---------------------------------------------------------------- card
  function itemTable(rows, col, hl) {
    var tbl = el("table"), body = el("tbody");
    headRow(tbl, ["#", "movie", col === 2 ? "count" : "strength", "", col === 2 ? "strength" : "count", "lift"]);
    var mx = rows.reduce(function (a, r) { return Math.max(a, r[col] || 0); }, 0) || 1;
    rows.forEach(function (r, k) {
      var tr = el("tr", r[0] === hl ? "hit" : null);
      tr.setAttribute("data-item", String(r[0]));
      tr.appendChild(td(k + 1, "num"));
      tr.appendChild(td(title(r[0]), "movie-title"));
      tr.appendChild(td(fmt(r[col], 2), "num"));
      tr.appendChild(tdBar((r[col] || 0) / mx));
      tr.appendChild(td(fmt(r[col === 2 ? 3 : 2], 2), "num"));
      tr.appendChild(td(fmt(r[4], 1), "num"));
      body.appendChild(tr);
    });
    tbl.appendChild(body);
    return tbl;
  }
  function enrichTable(rows, label) {
    var tbl = el("table"), body = el("tbody");
    headRow(tbl, [label, "share of top slots (| = all histories)", "top", "all", "log2 OR"]);
    rows.forEach(function (r) {
      var tr = el("tr");
      var nameTxt = typeof r[0] === "number" && label === "decade" ? r[0] + "s" : (label === "genre" ? D.genres[r[0]] : r[0]);
      var c0 = td(nameTxt);
      if (r[4]) { c0.appendChild(document.createTextNode(" ")); c0.appendChild(el("span", "sig", "*")); }
      tr.appendChild(c0);
      var cb = el("td"); cb.appendChild(bar(r[1], r[2])); tr.appendChild(cb);
      tr.appendChild(td(pct(r[1], 0), "num"));
      tr.appendChild(td(pct(r[2], 0), "num"));
      tr.appendChild(td(fmt(r[3], 2), "num"));
      body.appendChild(tr);
    });
    tbl.appendChild(body);
    return tbl;
  }
  function section(parent, id, heading, content, empty) {
    var wrap = el("div");
    wrap.id = id;
    wrap.appendChild(el("h3", null, heading));
    if (content) wrap.appendChild(content); else wrap.appendChild(el("p", "note", empty || "none"));
    parent.appendChild(wrap);
    return wrap;
  }
  function openCard(j, hl) {
    var l = LAT[j];
    if (!l) return false;
    highlightItem = (hl === undefined) ? null : hl;
    Array.prototype.forEach.call(document.querySelectorAll(".result"), function (r) {
      r.classList.toggle("active", r.getAttribute("data-latent") === String(j));
    });
    var card = $("card");
    clear(card);
    card.hidden = false;
    card.setAttribute("data-latent", String(j));
    var h = el("h2"); h.id = "card-title";
    h.appendChild(document.createTextNode("Latent " + j + " \u2014 " + name(j)));
    card.appendChild(h);
    var who = el("div"); who.id = "card-labeler";
    who.textContent = "label by " + (l.lb || (l.nm ? "dictionary table" : "nobody (no label)"));
    card.appendChild(who);
    var desc = el("p"); desc.id = "card-desc"; desc.textContent = l.ds || "";
    card.appendChild(desc);
    var flags = el("div"); flags.id = "card-flags";
    if (D.has_stats && !(l.nf > 0)) flags.appendChild(el("span", "flag dead", "dead (never fires)"));
    if (l.gen) flags.appendChild(el("span", "flag generic", "generic"));
    if (l.pop) flags.appendChild(el("span", "flag popularity", "popularity"));
    card.appendChild(flags);
    var st = el("div"); st.id = "card-stats";
    var parts = [];
    if (l.f !== undefined) parts.push("fires on " + pct(l.f, 2) + " of histories" + (l.nf !== undefined ? " (" + l.nf + ")" : ""));
    if (l.ma !== undefined) parts.push("mean activation " + fmt(l.ma, 3) + ", max " + fmt(l.mx, 3));
    if (l.pp !== undefined) parts.push("popularity percentile " + fmt(l.pp, 0) + " (50 = typical)");
    if (l.sp !== undefined) parts.push("Spearman with popularity " + fmt(l.sp, 2));
    if (l.cov !== undefined) parts.push("coverage " + pct(l.cov));
    st.textContent = parts.join(" \u00b7 ");
    card.appendChild(st);
    if (D.score_cols.length) {
      var tbl = null;
      if (l.sc) {  // name/value chips that wrap (balanced accuracy >= 0.8 in green)
        tbl = el("div", "score-grid");
        D.score_cols.forEach(function (c, k) {
          var v = l.sc[k], chip = el("span", "score");
          chip.appendChild(el("span", "k", c));
          var val = el("span", "v", fmt(v, 3));
          if (/^bal_acc/.test(c) && v !== null && v >= 0.8) val.className += " good";
          val.setAttribute("data-score", c);
          chip.appendChild(val);
          tbl.appendChild(chip);
        });
      }
      section(card, "card-scores", "Scores", tbl, "no score for this latent");
    }
    var it = l.it || [];
    var cols = el("div", "cols");
    var byCount = it.slice().sort(function (a, b) { return (b[2] - a[2]) || (b[3] - a[3]) || (a[1] - b[1]); }).slice(0, 20);
    var byStr = it.slice().sort(function (a, b) { return (b[3] - a[3]) || (b[2] - a[2]) || (a[1] - b[1]); }).slice(0, 20);
    section(cols, "card-top-count", "Top movies by activation count", it.length ? itemTable(byCount, 2, highlightItem) : null);
    section(cols, "card-top-strength", "Top movies by strength", it.length ? itemTable(byStr, 3, highlightItem) : null);
    card.appendChild(cols);
    var cols2 = el("div", "cols");
    section(cols2, "card-genres", "Genre mix (* = significantly enriched)",
            (l.ge && l.ge.length) ? enrichTable(l.ge, "genre") : null);
    section(cols2, "card-decades", "Decade mix", (l.de && l.de.length) ? enrichTable(l.de, "decade") : null);
    card.appendChild(cols2);
    var pr = null;
    if (l.pr && l.pr.length) {
      pr = el("ol"); pr.className = "promoted";
      l.pr.forEach(function (r) {
        var li = el("li", null, title(r[0]));
        li.appendChild(el("span", "why", "score " + fmt(r[1], 3)));
        pr.appendChild(li);
      });
    }
    section(card, "card-promoted", "Promoted items (output side: turning the latent up pushes these)", pr,
            "no promoted-items table given");
    return true;
  }

  // ---------------------------------------------------------------- user / movie profiles
  function profile(heading, rows, note) {
    $("profile-title").textContent = heading;
    $("profile-note").textContent = note || "";
    var ol = $("profile-rows");
    clear(ol);
    var mx = rows.reduce(function (a, r) { return Math.max(a, Math.abs(r.v || 0)); }, 0) || 1;
    rows.forEach(function (r) {
      var li = el("li", "profile-row");
      li.setAttribute("data-latent", String(r.j));
      li.tabIndex = 0;
      li.appendChild(el("span", "rid", "#" + r.j));
      li.appendChild(el("span", "rlabel", name(r.j)));
      li.appendChild(el("span", "why", r.why));
      li.appendChild(bar(Math.abs(r.v || 0) / mx, null, (r.v || 0) < 0));
      li.addEventListener("click", function () { openCard(r.j, r.item); });
      li.addEventListener("keydown", function (ev) { if (ev.key === "Enter") openCard(r.j, r.item); });
      ol.appendChild(li);
    });
    $("profile").hidden = false;
  }
  function showUser(raw) {
    var u = String(raw || "").trim();
    if (!u) { $("profile").hidden = true; return; }
    var rows = D.users[u];
    if (!rows) { profile("User " + u, [], Object.keys(D.users).length ? "no such user" : "no user table given"); return; }
    profile("User " + u + ": top concepts", rows.map(function (r) {
      return { j: r[0], v: r[1], why: "activation " + fmt(r[1], 3) };
    }));
  }
  function showMovieProfile(i) {
    var rows = D.movies[String(i)];
    if (rows) {
      profile(title(i) + ": top concepts by total strength", rows.map(function (r) {
        return { j: r[0], v: r[1], item: i, why: "strength " + fmt(r[1], 2) + (r[2] !== null && r[2] !== undefined ? " (" + pct(r[2]) + " of the movie's total)" : "") };
      }));
    } else {
      profile(title(i) + ": concepts whose top movies include it", (HITS[i] || []).map(function (h) {
        return { j: h.j, v: h.strength, item: i, why: "rank " + h.rank + ", count " + fmt(h.count) + ", strength " + fmt(h.strength, 2) };
      }), "no movie\u2192concept table given; showing the concept dictionaries instead");
    }
  }
  function showMovie(raw) {
    var q = norm(raw || "");
    if (!q) { $("profile").hidden = true; return; }
    var ms = matchTitles(q, true);
    if (!ms.length) { profile("No movie matches \u201c" + String(raw).trim() + "\u201d", []); return; }
    if (ms[0][1] === 0 || ms.length === 1) { showMovieProfile(ms[0][0]); return; }
    profile(ms.length + " movies match \u201c" + String(raw).trim() + "\u201d", [], "pick one:");
    var ol = $("profile-rows");
    ms.slice(0, 30).forEach(function (t) {
      var li = el("li", "movie-choice", title(t[0]));
      li.setAttribute("data-item", String(t[0]));
      li.tabIndex = 0;
      li.addEventListener("click", function () { showMovieProfile(t[0]); });
      ol.appendChild(li);
    });
  }

  // ---------------------------------------------------------------- wiring
  $("page-title").textContent = D.title;
  document.title = D.title;
  $("meta").textContent = D.n_latents + " latents (" + D.n_live + " live) \u00b7 " +
    Object.keys(D.items).length + " movies \u00b7 " + Object.keys(D.users).length + " users" +
    (D.score_cols.length ? " \u00b7 scores: " + D.score_cols.slice(0, 4).join(", ") : "");
  var s = $("search");
  s.addEventListener("input", function () { showResults(s.value); });
  s.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { showResults(s.value); openFirst(); } });
  $("user-q").addEventListener("input", function () { showUser($("user-q").value); });
  $("movie-q").addEventListener("input", function () { showMovie($("movie-q").value); });
  function fromHash() {
    var h = location.hash.replace(/^#/, "");
    if (!h) return;
    var p = new URLSearchParams(h);
    if (p.has("q")) { s.value = p.get("q"); showResults(s.value); openFirst(); }
    if (p.has("latent")) openCard(Number(p.get("latent")));
    if (p.has("user")) { $("user-q").value = p.get("user"); showUser(p.get("user")); }
    if (p.has("movie")) { $("movie-q").value = p.get("movie"); showMovie(p.get("movie")); }
  }
  window.addEventListener("hashchange", fromHash);
  showResults("");
  fromHash();
  document.body.setAttribute("data-ready", "1");
  window.recsaeBrowser = { search: search, openCard: openCard, showUser: showUser, showMovie: showMovie };
})();
"""

_BODY = """<header><h1 id="page-title"></h1><div id="meta"></div></header>
<main>
<div id="side">
<div class="panel"><h2>Find a concept</h2>
<input id="search" type="search" autocomplete="off" spellcheck="false"
 placeholder="label words, latent id or a movie title">
<div id="result-info"></div><ol id="results" class="list"></ol></div>
<div class="panel"><h2>Profiles</h2>
<input id="user-q" type="search" autocomplete="off" placeholder="user id"><div style="height:6px"></div>
<input id="movie-q" type="search" autocomplete="off" placeholder="movie title">
<div id="profile" hidden><h3 id="profile-title"></h3><div id="profile-note" class="note"></div>
<ol id="profile-rows" class="list"></ol></div></div>
</div>
<section id="card" hidden></section>
</main>
<noscript>This page needs JavaScript (no network access is used).</noscript>
"""


def render_html(data: dict) -> str:
    """The page for `browser_data` output."""
    script_hash = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{script_hash}'; style-src 'unsafe-inline'; "
           "img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(str(data.get('title', '')))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"{_BODY}<script type=\"application/json\" id=\"recsae-data\">{embed_json(data)}</script>\n"
            f"<script>{_JS}</script>\n</body>\n</html>\n")


def write_browser(path, tables: dict[str, pd.DataFrame], labels: pd.DataFrame | None = None,
                  scores: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
                  movies: pd.DataFrame | None = None, title: str = "Concept browser", *,
                  items: pd.DataFrame | None = None, max_items: int = MAX_ITEMS) -> Path:
    """Write the single-file HTML concept browser to `path` (atomically) and return the path."""
    data = browser_data(tables, labels, scores, users, movies, title, items=items, max_items=max_items)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(data).encode("utf-8", errors="replace")
    with artifacts.atomic_path(path) as tmp:
        Path(tmp).write_bytes(text)
        Path(tmp).chmod(0o644)   # a page to share and open, not a private temp file
    return path
