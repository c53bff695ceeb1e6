"""Latent cards and the enrichment labeler: what a labeler (offline or an LLM, `labeling.py`) is shown about a
latent, and the deterministic metadata label with the signature that the detection score tests
(`detection.py`). Only the training-side dictionary (`dictionary.py`) is read here.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

import numpy as np

from .dictionary import ENRICH_ALPHA, ENRICH_MIN_OR, ENRICH_MIN_SHARE, GENERIC_FREQ, LIFT_PRIOR, ConceptDictionary

CARD_TOP_ITEMS = 20        # items per card
CARD_EXAMPLES = 5          # example sequences per card
CARD_EXAMPLE_LEN = 9       # last <= 9 history titles per example (the reference's prompt; docs/protocol.md)
CARD_MAX_ENRICH = 8        # enrichment entries per card (enriched ones only, significant first)
LABEL_MAX_GENRES = 2       # genres (or categories) named in an offline label
LABEL_MAX_DECADES = 1      # decades named in an offline label
LABEL_MAX_COMMUNITIES = 1  # co-purchase communities named in an offline label (datasets with co-purchase lists)
LABEL_MAX_ITEMS = 20       # exemplar items named in an offline label's description (and in its signature)
LABEL_NAME_ITEMS = 3       # ... of which the first few also appear in its name
LABEL_P = 1e-8             # a label names a genre / decade only with one-sided Fisher p below this (1e-3
                           # Bonferroni-corrected for 1e5 latent x feature tests, more than 2,048 latents x ~30
                           # features make; the slot-level p-values are anti-conservative, see dictionary.py) ...
LABEL_MIN_OR = 2.0         # ... AND odds ratio at least this; popularity is named when exp|theta| (the odds of an
                           # above- vs below-median popularity item, `popularity_odds_ratio`) is at least this too
LABEL_WEAK_SHOWN = 3       # enriched features below the naming bar that the description still lists
VOCABULARIES = ("metadata", "exemplars")   # detection signatures: what a label names / plus its exemplar items
EXEMPLAR_MIN_COUNT = 3     # an exemplar is in at least 3 of the latent's pooled firing sequences ...
EXEMPLAR_MIN_LIFT = 2.0    # ... with shrunk lift at least 2 (twice its base rate)
POP_HIGH = 60.0            # popularity_pct >= this: "popular" (50 = a typical consumed item)
POP_LOW = 40.0             # popularity_pct <= this: "niche"


# ----------------------------------------------------------------------------------------------------
# Cards


def _enrich_entries(d: ConceptDictionary, j: int, kind: str, key: str) -> list[dict]:
    """Enriched features (OR > 1, share of top slots >= ENRICH_MIN_SHARE) of latent j, significant ones
    first (by OR), then the rest by p."""
    cols = np.flatnonzero(d.feats.kind == kind)
    if cols.size == 0:
        return []
    orr, p = d.enrich.odds_ratio[j, cols], d.enrich.p_value[j, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = d.enrich.a[j, cols] / d.enrich.top_slots[j, cols]
    ok = np.isfinite(orr) & (orr > 1) & (d.enrich.a[j, cols] > 0) & (share >= ENRICH_MIN_SHARE)
    cols, orr, p = cols[ok], orr[ok], p[ok]
    sig = (p < ENRICH_ALPHA) & (orr >= ENRICH_MIN_OR)
    o = np.lexsort((cols, np.where(sig, -orr, p), ~sig))[:CARD_MAX_ENRICH]
    return [{key: d.feats.value[cols[i]], "odds_ratio": float(orr[i]), "p_value": float(p[i])} for i in o]


def _context(d: ConceptDictionary, j: int, top_items: np.ndarray) -> str:
    """Free text for datasets without titles: category enrichment and the top items' co-purchase ids."""
    if d.meta.get("has_titles"):
        return ""
    parts = []
    cats = _enrich_entries(d, j, "genre", "genre")[:5]
    if cats:
        parts.append("enriched categories: " + ", ".join(f"{c['genre']} (OR {c['odds_ratio']:.1f})" for c in cats))
    co = []
    for i in top_items[:5]:
        comp, sub = d.meta["complement"][i] or [], d.meta["substitute"][i] or []
        if comp or sub:
            s = f"item {i}" + (f" [{d.meta['category'][i]}]" if d.meta["category"][i] else "")
            if comp:
                s += " complements " + ", ".join(map(str, comp[:5]))
            if sub:
                s += ("; " if comp else "") + " substitutes " + ", ".join(map(str, sub[:5]))
            co.append(s)
    if co:
        parts.append("co-purchases of top items: " + " | ".join(co))
    return "; ".join(parts)


def item_entry(d: ConceptDictionary, i: int, **extra) -> dict:
    """One item as cards and labelers see it: title, year, genres (categories), popularity percentile among
    training slots ('pct') and co-purchase community (None where the dataset has none)."""
    meta = d.meta
    comm = meta.get("community")
    return {"item_id": int(i), "title": meta["title"][i], "year": meta["year"][i], "genres": list(meta["genres"][i]),
            "pct": float(d.item_pct[i]), "community": None if comm is None or comm[i] < 0 else int(comm[i]), **extra}


def _ranked(d: ConceptDictionary, j: int, key: str, n: int) -> list[dict]:
    """Latent j's top n items by activation count (ties: strength, item id) or by strength."""
    t = d.tables
    a, b = t.ptr[j], t.ptr[j + 1]
    item, count, strength = t.item[a:b], t.count[a:b], t.strength[a:b]
    o = np.lexsort((item, -strength, -count)) if key == "count" else np.lexsort((item, -count, -strength))
    return [item_entry(d, int(item[k]), count=int(count[k]), strength=float(strength[k])) for k in o[:n]]


def latent_cards(d: ConceptDictionary, n_items: int = CARD_TOP_ITEMS,
                 n_examples: int = CARD_EXAMPLES) -> list[dict]:
    """One JSON-ready dict per live latent in the schema the LLM labeler consumes (see module tests):
    top items by shrunk lift ('top_items'), by activation count ('top_by_count') and by strength
    ('top_by_strength'), enrichments, popularity and example sequences."""
    t = d.tables
    cards = []
    for j in d.live.tolist():
        a, b = t.ptr[j], min(t.ptr[j + 1], t.ptr[j] + n_items)
        its = t.item[a:b]
        top_items = [item_entry(d, i, count=int(c), strength=float(s), lift=float(lf))
                     for i, c, s, lf in zip(its.tolist(), t.count[a:b].tolist(), t.strength[a:b].tolist(),
                                            t.lift[a:b].tolist())]
        ne = min(n_examples, int(d.top.count[j]))
        examples = []
        for inst, v in zip(d.top.inst[j, :ne].tolist(), d.top.val[j, :ne].tolist()):
            h = d.hist[inst, :CARD_EXAMPLE_LEN]
            h = h[h > 0][::-1]  # chronological: oldest of the last <= 9 first
            examples.append({"history_titles": [str(x) for x in d.display[h]], "activation": float(v)})
        pp = d.popularity_pct[j]
        cards.append({
            "latent": int(j), "n_fire": int(d.stats.n_fire[j]), "freq": float(d.stats.freq[j]),
            "n_pool": int(t.n_top[j]), "top_items": top_items,
            "top_by_count": _ranked(d, j, "count", n_items), "top_by_strength": _ranked(d, j, "strength", n_items),
            "genre_enrichment": _enrich_entries(d, j, "genre", "genre"),
            "decade_enrichment": _enrich_entries(d, j, "decade", "decade"),
            "community_enrichment": _enrich_entries(d, j, "community", "community"),
            "popularity_pct": float(pp) if np.isfinite(pp) else 50.0,
            "context": _context(d, j, its),
            "examples": examples,
        })
    return cards



# ----------------------------------------------------------------------------------------------------
# Offline labels and their signatures


def _significant(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e["p_value"] < ENRICH_ALPHA and e["odds_ratio"] >= ENRICH_MIN_OR]


def _langevin_inv(mu: float) -> float:
    """Inverse Langevin function (Cohen's approximation): the tilt theta of an exponential-family density
    exp(theta u) on [-1, 1] whose mean is mu."""
    mu = float(np.clip(mu, -0.95, 0.95))
    return mu * (3.0 - mu * mu) / (1.0 - mu * mu)


def _shrunk_lift(count: float, lift: float, prior: float = LIFT_PRIOR) -> float:
    """The ranking key of `item_tables` recovered from a card entry: lift = (count / N) / base, so the
    expected count N * base = count / lift and the shrunk lift is (count + a) / (count / lift + a)."""
    if not (count > 0 and lift > 0 and math.isfinite(lift)):
        return 0.0
    return (count + prior) / (count / lift + prior)


def label_exemplars(card: Mapping[str, Any], max_items: int | None = None) -> list[dict]:
    """The latent's exemplar items: its card's top items (already ranked by shrunk lift) that occur in at
    least EXEMPLAR_MIN_COUNT of its pooled training sequences with shrunk lift >= EXEMPLAR_MIN_LIFT, best
    first, at most `max_items`. Each: {'item_id', 'title' (None without titles), 'count', 'lift_shrunk'}."""
    out = []
    for it in card.get("top_items", []) or []:
        c, lf = float(it.get("count", 0) or 0), float(it.get("lift", 0) or 0)
        ls = _shrunk_lift(c, lf)
        if c >= EXEMPLAR_MIN_COUNT and ls >= EXEMPLAR_MIN_LIFT:
            out.append({"item_id": int(it["item_id"]), "title": it.get("title"), "count": int(c),
                        "lift_shrunk": ls})
    out.sort(key=lambda e: (-e["lift_shrunk"], -e["count"], e["item_id"]))  # stable w.r.t. the card's order
    return out[:LABEL_MAX_ITEMS if max_items is None else max_items]


def label_signature(card: Mapping[str, Any], vocabulary: str = "exemplars") -> dict:
    """The signature a detection score tests, in one of two vocabularies (VOCABULARIES):
    'metadata' is `metadata_signature`, only what the enrichment label's name states; 'exemplars' (the default,
    the study's original signature) weighs, besides genres, decades and popularity, the exemplar items:
    - exemplar items (`label_exemplars`: up to LABEL_MAX_ITEMS of the card's top items by shrunk lift with
      count >= EXEMPLAR_MIN_COUNT and shrunk lift >= EXEMPLAR_MIN_LIFT), weight log(shrunk lift), the
      log-likelihood ratio of the item being in a sequence;
    - genres (categories): up to LABEL_MAX_GENRES significantly enriched ones (p < ENRICH_ALPHA, odds ratio
      >= ENRICH_MIN_OR, largest odds ratio first), weight log(odds ratio);
    - decades: up to LABEL_MAX_DECADES, chosen and weighted the same way; co-purchase communities likewise
      (LABEL_MAX_COMMUNITIES; datasets with also-bought / also-viewed lists);
    - popularity band from popularity_pct: 'popular' (>= POP_HIGH), 'niche' (<= POP_LOW), else 'mid'.
      For popular/niche the weight is theta = Langevin^-1((pct - 50) / 50), the log-likelihood slope of a
      tilted-uniform model of item popularity percentiles, so it sits on the same per-slot log-odds scale
      as the genre weights; 'mid' carries no weight (it does not separate anything).
    A sequence's score is sum_i weight_i * [item i in the sequence] + sum_f weight_f * share_f(sequence)
    + theta * (mean item percentile - 50) / 50 (`signature_scores`). Only the card (training data) is read."""
    if vocabulary == "metadata":
        return metadata_signature(card)
    if vocabulary != "exemplars":
        raise ValueError(f"vocabulary must be one of {VOCABULARIES}, not {vocabulary!r}")
    g = _significant(card.get("genre_enrichment", []))
    g = sorted(g, key=lambda e: (-e["odds_ratio"], str(e["genre"])))[:LABEL_MAX_GENRES]
    dd = _significant(card.get("decade_enrichment", []))
    dd = sorted(dd, key=lambda e: (-e["odds_ratio"], int(e["decade"])))[:LABEL_MAX_DECADES]
    cc = _significant(card.get("community_enrichment", []))
    cc = sorted(cc, key=lambda e: (-e["odds_ratio"], int(e["community"])))[:LABEL_MAX_COMMUNITIES]
    pct = float(card.get("popularity_pct", 50.0))
    band = "popular" if pct >= POP_HIGH else "niche" if pct <= POP_LOW else "mid"
    theta = _langevin_inv((pct - 50.0) / 50.0) if band != "mid" else 0.0
    return {"latent": int(card["latent"]),
            "items": {e["item_id"]: math.log(e["lift_shrunk"]) for e in label_exemplars(card)},
            "genres": {str(e["genre"]): math.log(e["odds_ratio"]) for e in g},
            "decades": {int(e["decade"]): math.log(e["odds_ratio"]) for e in dd},
            "communities": {int(e["community"]): math.log(e["odds_ratio"]) for e in cc},
            "popularity": {"band": band, "pct": pct, "weight": theta}}


def _is_titled(card: Mapping[str, Any]) -> bool:
    return any(it.get("title") for it in card.get("top_items", []))


def _short_title(e: Mapping[str, Any]) -> str:
    """'Tombstone (1993)' -> 'Tombstone', 'Princess Mononoke, The (Mononoke Hime) (1997)' -> 'The Princess
    Mononoke' (year and alternative title dropped, article moved to the front so names hold no stray
    commas); items without a title -> 'item <id>'."""
    t = e.get("title")
    if not t:
        return f"item {e['item_id']}"
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", str(t))
    t = re.sub(r"^(.+?)\s+\([^()]*\)$", r"\1", t)
    return re.sub(r"^(.+), (The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)$", r"\2 \1", t).replace("L' ", "L'")


def popularity_odds_ratio(pct: float) -> float:
    """exp|theta| of a popularity percentile: under the tilted-uniform model of `label_signature` the odds of
    an above- vs a below-median popularity item are exp(theta), so popularity ranks against genre and decade
    odds ratios on one scale (1 at pct 50; 2 at about pct 61 or 39)."""
    return math.exp(abs(_langevin_inv((float(pct) - 50.0) / 50.0)))


def label_concept(card: Mapping[str, Any]) -> list[dict]:
    """What an offline label names, strongest first: up to LABEL_MAX_GENRES genres (categories) and
    LABEL_MAX_DECADES decades with p < LABEL_P and odds ratio >= LABEL_MIN_OR (among the card's entries, which
    already hold >= ENRICH_MIN_SHARE of the latent's slots), and the popularity band ('popular' / 'niche')
    when `popularity_odds_ratio` >= LABEL_MIN_OR, all ordered by odds ratio (ties: genre, decade, popularity,
    then value). Each part: {'kind': 'genre'|'decade'|'popularity', 'value', 'odds_ratio', 'weight'} with
    weight log(odds ratio) (popularity: signed theta). Empty = no clear signal."""
    def strong(entries, key, n):
        ok = [e for e in entries or [] if e["p_value"] < LABEL_P and e["odds_ratio"] >= LABEL_MIN_OR]
        ok.sort(key=lambda e: (-e["odds_ratio"], str(e[key])))
        return [{"kind": key, "value": e[key], "odds_ratio": float(e["odds_ratio"]),
                 "weight": math.log(e["odds_ratio"])} for e in ok[:n]]

    parts = strong(card.get("genre_enrichment"), "genre", LABEL_MAX_GENRES) \
        + strong(card.get("decade_enrichment"), "decade", LABEL_MAX_DECADES) \
        + strong(card.get("community_enrichment"), "community", LABEL_MAX_COMMUNITIES)
    pct = float(card.get("popularity_pct", 50.0))
    if popularity_odds_ratio(pct) >= LABEL_MIN_OR:
        parts.append({"kind": "popularity", "value": "popular" if pct > 50 else "niche",
                      "odds_ratio": popularity_odds_ratio(pct), "weight": _langevin_inv((pct - 50.0) / 50.0)})
    order = {"genre": 0, "decade": 1, "community": 2, "popularity": 3}
    return sorted(parts, key=lambda p: (-p["odds_ratio"], order[p["kind"]], str(p["value"])))


def metadata_signature(card: Mapping[str, Any]) -> dict:
    """The 'metadata' vocabulary: the signature of exactly what the enrichment label's name states
    (`label_concept`), no items; a person reading the label could apply it. Same schema and weights as
    `label_signature` (log odds ratios, popularity theta); a latent with no clear signal gets an empty one."""
    parts = label_concept(card)
    pop = [p for p in parts if p["kind"] == "popularity"]
    pct = float(card.get("popularity_pct", 50.0))
    return {"latent": int(card["latent"]), "items": {},
            "genres": {str(p["value"]): p["weight"] for p in parts if p["kind"] == "genre"},
            "decades": {int(p["value"]): p["weight"] for p in parts if p["kind"] == "decade"},
            "communities": {int(p["value"]): p["weight"] for p in parts if p["kind"] == "community"},
            "popularity": {"band": pop[0]["value"] if pop else "mid", "pct": pct,
                           "weight": pop[0]["weight"] if pop else 0.0}}


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _part_text(p: Mapping[str, Any]) -> str:
    """'1990s', 'Western'; a category known only by its id (Grocery) reads 'category 12'."""
    v = str(p["value"])
    if p["kind"] == "community":
        return f"co-purchase group {v}"
    return f"{v}s" if p["kind"] == "decade" else f"category {v}" if v.isdigit() else v


def offline_label(card: Mapping[str, Any]) -> dict:
    """A deterministic label from metadata only (the default labeler when no LLM is configured). The name
    leads with the concept, strongest first (`label_concept`: only materially enriched genres, decades and
    popularity), then LABEL_NAME_ITEMS exemplar titles, e.g. "Western, 1990s (Tombstone, Unforgiven,
    Maverick)"; a latent with no clear signal says so: "no clear genre/decade/popularity signal: Tombstone,
    ...". Generic latents keep their "generic (x% of histories): " prefix. The description gives the odds
    ratios, the weaker enrichments left unnamed and the exemplar items with their lift."""
    parts = label_concept(card)
    titled = _is_titled(card)
    dated = any(it.get("year") for it in card.get("top_items", []) or []) or bool(card.get("decade_enrichment"))
    what = "titles" if titled else "items"
    ex = label_exemplars(card)
    short = ", ".join(_short_title(e) for e in ex[:LABEL_NAME_ITEMS])
    kinds = ["genre" if titled else "category"] + (["decade"] if dated else []) + ["popularity"]
    if parts:
        name = ", ".join(_part_text(p) for p in parts) + (f" ({short})" if short else "")
    else:
        name = f"no clear {'/'.join(kinds)} signal" + (f": {short}" if short else "")
    freq = float(card.get("freq", 0.0))
    if freq > GENERIC_FREQ:
        name = f"generic ({100 * freq:.0f}% of histories): " + name
    pct = float(card.get("popularity_pct", 50.0))

    def says(p):
        if p["kind"] == "popularity":
            return f"{p['value']} {what} (popularity percentile {pct:.0f}, odds ratio {p['odds_ratio']:.1f})"
        return (f"{p['value']}s releases" if p["kind"] == "decade" else f"{_part_text(p)} {what}") \
            + f" (odds ratio {p['odds_ratio']:.1f})"

    named = {(p["kind"], p["value"]) for p in parts}
    weak = [dict(e, kind=k, value=e[k]) for k in ("genre", "decade")
            for e in _significant(card.get(f"{k}_enrichment", [])) if (k, e[k]) not in named]
    weak = sorted(weak, key=lambda e: (-e["odds_ratio"], str(e["value"])))[:LABEL_WEAK_SHOWN]
    desc = ("Fires on histories with more " + _and([says(p) for p in parts]) + " than the average history."
            if parts else f"Fires on histories with no {_and(kinds).replace(' and ', ' or ')} enrichment strong "
                          f"enough to name (odds ratio >= {LABEL_MIN_OR:g} at p < {LABEL_P:g}); popularity "
                          f"percentile {pct:.0f}.")
    if weak:
        desc += " Also enriched, not named: " + ", ".join(f"{_part_text(e)} (odds ratio {e['odds_ratio']:.1f})"
                                                          for e in weak) + "."
    if ex:
        desc += (f" Typical {what}: " + "; ".join(f"{e['title'] or 'item ' + str(e['item_id'])} "
                                                   f"({e['lift_shrunk']:.1f}x base rate)" for e in ex) + ".")
    return {"name": name, "description": desc}
