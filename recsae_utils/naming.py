"""What a latent's top items share, named: series and franchises, genre patterns, decades, co-purchase
communities; the offline labeler built on them ("offline-shared"), and label precision, the measure every
labeler (offline, enrichment-based or an LLM) is held to.

Label precision of a latent: the share of its top-10 items by activation count (`TOP`) that carry what its
label names. A label's named things are its *parts* (genre, decade, series, community, category,
popularity); a plain label claims all of them at once, so an item counts when it carries every part; a
"mixed: X and Y" label claims two threads, so an item counts when it carries either. A label that names
nothing ("no clear signal") has no precision and is counted apart.

The offline labeler reads the same top 10, so on training data its precision is high partly by
construction; `precision_stats` therefore also scores labels on the latent's held-out top 10 (other users'
firings), which the labeler never saw.

Series: titles are cut to a stem (year, alternative title, article, subtitle after ':' and trailing sequel
numbers dropped: "Star Trek VI: The Undiscovered Country" -> "star trek", "Rocky II" -> "rocky"); two titles
with one stem, or whose stems share a prefix of two or more words holding an uncommon word ("Indiana Jones
and the ..."), form a series. Franchises whose titles share no stem come from `FRANCHISES`, a small curated
table (James Bond, Wallace & Gromit, Alien, Indiana Jones, Mad Max, Muppets); docs/labels.md says so. A series
that holds fewer than MIN_SHARE of the top items is still named, as 'incl. Rocky films (2/10)': its own
count is stated, so it is not part of what the label claims for every item.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

TOP = 10               # top items by activation count that a label is checked against
MIN_SHARE = 0.6        # a plain label's parts must hold jointly for at least this share of the top items
THREAD_SHARE = 0.3     # a thread of a "mixed" label holds at least this share ...
SERIES_MIN = 2         # ... a series at least this many items
MIN_LIFT = 1.5         # a genre / decade / category / popularity part is named only at this lift over its base share
THREAD_LIFT = 1.2      # ... a thread of a mixed label at this lift; the two strongest (share x log lift) are named
MAX_PARTS = 3          # parts of a plain label
NAME_TITLES = 3        # exemplar titles in a name (those that carry the label)
POPULAR_PCT = 90.0     # an item is "among the most consumed" at this popularity percentile of training slots (the top
                       # 10% of consumption): every latent's top items by count are popular, so the median would name all
NICHE_PCT = 50.0       # ... and "niche" below the median
POPULARITY_TEXT = {"popular": "most-consumed items", "niche": "niche items"}

FRANCHISES: dict[str, tuple[str, ...]] = {   # titles as short_title() writes them, lower case
    "James Bond": ("dr. no", "from russia with love", "goldfinger", "thunderball", "you only live twice",
                   "on her majesty's secret service", "diamonds are forever", "live and let die",
                   "the man with the golden gun", "the spy who loved me", "moonraker", "for your eyes only",
                   "octopussy", "never say never again", "a view to a kill", "the living daylights",
                   "licence to kill", "goldeneye", "tomorrow never dies", "the world is not enough"),
    "Wallace & Gromit": ("a close shave", "the wrong trousers", "a grand day out",
                         "wallace & gromit: the best of aardman animation"),
    "Alien": ("alien", "aliens", "alien³", "alien: resurrection"),
    "Indiana Jones": ("raiders of the lost ark", "indiana jones and the temple of doom",
                      "indiana jones and the last crusade"),
    "Mad Max": ("mad max", "mad max 2", "mad max beyond thunderdome"),
    "Muppets": ("the muppet movie", "the great muppet caper", "the muppets take manhattan", "muppet treasure island",
                "muppets from space", "the muppet christmas carol"),
}
COMMON = frozenset("""the a an of and in on to with for at from by or is it its my your his her our their who what
how why when where me you i we he she they this that all one two three part chapter episode vol volume ii iii iv
v vi vii viii ix x man men woman women love night day days big little life story world time king queen girl girls
boy boys house city dead last black white red blue american new good bad great old young lost dark blood death
return revenge back home first second final secret true kind mr mrs dr miss lady sweet film films movie
picture show item""".split())
GENRE_PHRASES = {   # a pattern of genres named as one kind of film (display only; precision reads the parts)
    frozenset({"Animation", "Children's"}): "animated children's films",
    frozenset({"Comedy", "Romance"}): "romantic comedies",
    frozenset({"Action", "Sci-Fi"}): "sci-fi action",
    frozenset({"Children's", "Comedy"}): "family comedies",
    frozenset({"Crime", "Film-Noir"}): "crime noir",
    frozenset({"Horror", "Sci-Fi"}): "sci-fi horror",
    frozenset({"Musical", "Romance"}): "romantic musicals",
    frozenset({"Action", "War"}): "war action",
}
_NUM = r"(?:\d+|[ivx]+)"
_SEQUEL = re.compile(rf"(?:\s+(?:part|chapter|episode|vol\.?|volume))?\s+{_NUM}$")


# ----------------------------------------------------------------------------------------------------
# Titles and series


def short_title(title: str) -> str:
    """'Spy Who Loved Me, The (1977)' -> 'The Spy Who Loved Me'; 'Mad Max 2 (a.k.a. The Road Warrior) (1981)'
    -> 'Mad Max 2' (year and alternative title dropped, trailing article moved to the front)."""
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", str(title)).strip()
    t = re.sub(r"^(.+?)\s+\([^()]*\)$", r"\1", t)
    t = re.sub(r"^(.+?), (The|A|An)(:.*)?$", lambda m: f"{m.group(2)} {m.group(1)}{m.group(3) or ''}", t)
    return t


def _franchise_index() -> dict[str, str]:
    return {t: name for name, titles in FRANCHISES.items() for t in titles}


_CURATED = _franchise_index()


def series_stem(title: str | None) -> str | None:
    """The stem that sequels share ('rocky', 'star trek', 'toy story'), a curated franchise name, or None
    (no title, or a stem of common words only)."""
    if not title:
        return None
    t = short_title(title).lower()
    if t in _CURATED:
        return _CURATED[t]
    head = re.split(r":| - ", t)[0].strip()
    head = re.sub(r"^(the|a|an)\s+", "", head)
    while True:
        cut = _SEQUEL.sub("", head).strip()
        if cut == head or not cut:
            break
        head = cut
    words = head.split()
    if not words or not any(w not in COMMON and len(w) >= 3 for w in words):
        return None
    return head


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    out = []
    for x, y in zip(a, b):
        if x != y:
            break
        out.append(x)
    while out and out[-1] in COMMON:
        out.pop()
    return out


def find_series(titles: Sequence[str | None]) -> dict[str, list[int]]:
    """{series name: positions in `titles`} for every series of at least SERIES_MIN titles: one stem, or
    stems sharing a prefix of >= 2 words with an uncommon word in it. Names are title-cased stems or the
    curated franchise's name; common words never make a series on their own."""
    stems = [series_stem(t) for t in titles]
    groups: dict[str, set[int]] = {}
    for i, s in enumerate(stems):
        if s:
            groups.setdefault(s, set()).add(i)
    for i, j in itertools.combinations(range(len(stems)), 2):
        a, b = stems[i], stems[j]
        if not a or not b or a == b or a in _CURATED.values() or b in _CURATED.values():
            continue
        p = _common_prefix(a.split(), b.split())
        if len(p) >= 2 and any(w not in COMMON and len(w) >= 3 for w in p):
            groups.setdefault(" ".join(p), set()).update((i, j))
    out = {}
    for s, pos in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(pos) >= SERIES_MIN:
            name = s if s in FRANCHISES else _display(s, [titles[i] for i in sorted(pos)])
            out.setdefault(name, sorted(pos))
    return out


def _display(stem: str, titles: list) -> str:
    """The stem in the titles' own spelling ('star trek' -> 'Star Trek')."""
    for t in titles:
        m = re.search(re.escape(stem), short_title(t), flags=re.IGNORECASE)
        if m:
            return m.group(0)
    return stem.title()


# ----------------------------------------------------------------------------------------------------
# Parts: what a label can name, and which items carry it


@dataclass(frozen=True)
class Part:
    """One thing a label names. kind: genre | decade | series | community | category | popularity."""

    kind: str
    value: Any
    text: str


def carries(item: Mapping[str, Any], part: Part, series_of: Mapping[int, str] | None = None) -> bool:
    """Whether an item (a card entry: genres, year, title, community, category, pct) carries a part."""
    k, v = part.kind, part.value
    if k == "genre":
        return v in (item.get("genres") or [])
    if k == "category":
        return str(item.get("category")) == str(v) or v in (item.get("genres") or [])
    if k == "decade":
        y = item.get("year")
        return y is not None and int(y) // 10 * 10 == int(v)
    if k == "series":
        if series_of is not None and int(item.get("item_id", -1)) in series_of:
            return series_of[int(item["item_id"])] == v
        return _in_series(item.get("title"), v)
    if k == "community":
        return item.get("community") is not None and int(item["community"]) == int(v)
    if k == "popularity":
        pct = item.get("pct")
        return pct is not None and ((pct >= POPULAR_PCT) if v == "popular" else (pct < NICHE_PCT))
    raise ValueError(f"unknown part kind {k!r}")


def _in_series(title: str | None, name: str) -> bool:
    s = series_stem(title)
    if s is None:
        return False
    if name in FRANCHISES:
        return s == name
    n = name.lower()
    return s == n or s.startswith(n + " ")


def precision(parts: Sequence[Part], items: Sequence[Mapping], mode: str = "all", top: int = TOP) -> float:
    """Share of the first `top` items carrying every part (mode 'all') or any part (mode 'any', a mixed
    label); NaN when the label names nothing or there are no items."""
    items = list(items)[:top]
    if not parts or not items:
        return float("nan")
    hit = np.array([[carries(it, p) for p in parts] for it in items])
    ok = hit.all(1) if mode == "all" else hit.any(1)
    return float(ok.mean())


# ----------------------------------------------------------------------------------------------------
# Threads and the offline labeler


@dataclass
class Vocabulary:
    """Base shares of the things a label can name (share of training slots carrying each), so that a part is
    named only where the top items hold it well above its base rate."""

    base: dict[tuple[str, Any], float] = field(default_factory=dict)
    has_titles: bool = True
    note: str = ""        # a sentence about the vocabulary said once (Grocery: category ids only)
    community_names: dict[int, str] = field(default_factory=dict)

    def lift(self, part: Part, share: float) -> float:
        b = self.base.get((part.kind, part.value))
        return float("inf") if not b else share / b


def _pct(n: int, total: int) -> str:
    return "" if n >= total else f" ({n}/{total})"


def _candidate_parts(items: list[Mapping], vocab: Vocabulary) -> list[tuple[Part, np.ndarray]]:
    """Every part at least one top item carries, with its item mask."""
    n = len(items)
    out: list[tuple[Part, np.ndarray]] = []
    if vocab.has_titles:
        for name, pos in find_series([it.get("title") for it in items]).items():
            mask = np.zeros(n, bool)
            mask[pos] = True
            word = "films" if name not in ("Wallace & Gromit",) else "shorts"
            out.append((Part("series", name, f"{name} {word}"), mask))
    seen: dict[tuple, np.ndarray] = {}
    for i, it in enumerate(items):
        keys = [("genre", g) for g in it.get("genres") or []]
        if it.get("year") is not None:
            keys.append(("decade", int(it["year"]) // 10 * 10))
        if it.get("community") is not None:
            keys.append(("community", int(it["community"])))
        if it.get("pct") is not None:
            if it["pct"] >= POPULAR_PCT or it["pct"] < NICHE_PCT:
                keys.append(("popularity", "popular" if it["pct"] >= POPULAR_PCT else "niche"))
        for k in keys:
            seen.setdefault(k, np.zeros(n, bool))[i] = True
    for (kind, value), mask in sorted(seen.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        if kind == "genre" and not vocab.has_titles:
            kind = "category"
        text = (f"{value}s" if kind == "decade" else f"category {value}" if kind == "category"
                else f"co-purchase group {value}" if kind == "community"
                else POPULARITY_TEXT[value] if kind == "popularity" else str(value))
        out.append((Part(kind, value, text), mask))
    return out


def _info(part: Part, vocab: Vocabulary) -> float:
    """How much a part says: -log of its base share (series and communities without a base say most)."""
    b = vocab.base.get((part.kind, part.value))
    return 8.0 if not b else -math.log(max(b, 1e-6))


def _named_ok(part: Part, mask: np.ndarray, vocab: Vocabulary) -> bool:
    if part.kind == "series":
        return mask.sum() >= SERIES_MIN
    return vocab.lift(part, float(mask.mean())) >= MIN_LIFT


def shared_parts(items: Sequence[Mapping], vocab: Vocabulary) -> tuple[list[Part], str, np.ndarray]:
    """What the top items share: (parts, mode, mask of the items that carry the label). Mode 'all': the most
    informative set of up to MAX_PARTS parts held jointly by >= MIN_SHARE of the items; else 'any': the two
    strongest threads (`_strength`; each >= THREAD_SHARE at lift > THREAD_LIFT, a series >= SERIES_MIN items), one
    not inside the other; else ([], 'none')."""
    items = list(items)[:TOP]
    n = len(items)
    cands = [(p, m) for p, m in _candidate_parts(items, vocab) if _named_ok(p, m, vocab)]
    if not n:
        return [], "none", np.zeros(0, bool)
    strong = [(p, m) for p, m in cands if m.mean() >= MIN_SHARE]
    best, best_key = None, None
    for r in range(1, MAX_PARTS + 1):
        for combo in itertools.combinations(strong, r):
            if len({p.kind for p, _ in combo if p.kind in ("decade", "popularity", "community")}) < \
                    sum(p.kind in ("decade", "popularity", "community") for p, _ in combo):
                continue        # two decades (or two communities) at once cannot both hold for one item
            joint = np.logical_and.reduce([m for _, m in combo])
            if joint.mean() < MIN_SHARE:
                continue
            key = (sum(_info(p, vocab) for p, _ in combo) * joint.mean(), joint.sum(), -r)
            if best_key is None or key > best_key:
                best, best_key = combo, key
    if best is not None:
        parts = sorted(best, key=lambda pm: _order(pm[0]))
        return [p for p, _ in parts], "all", np.logical_and.reduce([m for _, m in parts])
    threads = [(p, m) for p, m in _candidate_parts(items, vocab)
               if (m.mean() >= THREAD_SHARE and vocab.lift(p, float(m.mean())) > THREAD_LIFT)
               or (p.kind == "series" and m.sum() >= SERIES_MIN)]
    pair, pkey = None, None
    for (p1, m1), (p2, m2) in itertools.combinations(threads, 2):
        if (m2 & ~m1).sum() == 0 or (m1 & ~m2).sum() == 0:
            continue            # one thread inside the other: not two threads
        key = (_strength(p1, m1, vocab) + _strength(p2, m2, vocab), (m1 | m2).sum())
        if pkey is None or key > pkey:
            pair, pkey = ((p1, m1), (p2, m2)), key
    if pair is not None:
        pair = sorted(pair, key=lambda pm: (-pm[1].sum(), _order(pm[0])))
        return [p for p, _ in pair], "any", pair[0][1] | pair[1][1]
    return [], "none", np.zeros(n, bool)


def _strength(p: Part, mask: np.ndarray, vocab: Vocabulary) -> float:
    """How strongly the top items hold a thread: share x log(lift over its base share); a series without a
    base counts as a rare thing (lift 1 / 0.01)."""
    share = float(mask.mean())
    lift = vocab.lift(p, share)
    return share * math.log(lift if math.isfinite(lift) else share / 0.01)


def _order(p: Part) -> tuple:
    return ({"series": 0, "community": 1, "genre": 2, "category": 2, "decade": 3, "popularity": 4}[p.kind], str(p.value))


def parts_text(parts: Sequence[Part], mode: str, items: Sequence[Mapping]) -> str:
    """The label's stem: 'Comedy (7/10), 1990s', 'animated children's films, 1950s (6/10)',
    'mixed: Rocky films (4/10) and Drama (3/10)'; each part's share of the top items where below 100%."""
    items = list(items)[:TOP]
    n = len(items)

    def share(p):
        return _pct(sum(carries(it, p) for it in items), n)

    if mode == "any":
        return "mixed: " + " and ".join(p.text + share(p) for p in parts)
    genres = frozenset(p.value for p in parts if p.kind == "genre")
    phrase = next((ph for combo, ph in GENRE_PHRASES.items() if combo <= genres), None)
    texts = []
    if phrase:
        combo = next(c for c, ph in GENRE_PHRASES.items() if ph == phrase)
        joint = sum(all(g in (it.get("genres") or []) for g in combo) for it in items)
        dec = [p for p in parts if p.kind == "decade"]
        classic = "classic " if dec and int(dec[0].value) < 1970 else ""
        texts.append(f"{classic}{phrase}{_pct(joint, n)}")
        parts = [p for p in parts if not (p.kind == "genre" and p.value in combo)]
    texts += [p.text + share(p) for p in parts]
    return ", ".join(texts)


def stem_of(name: str) -> str:
    """A label's stem for counting distinct labels: the name without exemplar titles, item shares, the
    generic prefix and the output side ('Comedy (7/10), 1990s (e.g. Wonder Boys, ...)' -> 'Comedy, 1990s';
    the enrichment labeler's 'Western, 1990s (Tombstone, ...)' -> 'Western, 1990s')."""
    s = re.sub(r"^generic \([^)]*\):\s*", "", str(name or ""))
    s = s.split(OUTPUT_SEP)[0]
    if s.startswith("no clear"):
        s = s.split(":")[0]
    s = re.sub(r"\s+\(e\.g\. [^()]*\)$", "", s)
    s = re.sub(r"\s+\((?![^()]*\d+/\d+)[^()]*\)$", "", s)
    s = re.sub(r"\s*\(\d+/\d+\)", "", s).strip()
    if s.startswith("mixed: ") and " and " in s:      # the same two threads in either order: one stem
        s = "mixed: " + " and ".join(sorted(s[len("mixed: "):].split(" and ", 1)))
    return s


OUTPUT_SEP = "; decoder promotes: "
OFFLINE_SHARED = "offline-shared"     # the labeler column of this labeler's labels


def vocabulary_of(d) -> Vocabulary:
    """Base shares (share of training slots whose item carries each genre, decade, category, community and
    popularity half) from a `dictionary.ConceptDictionary`, community names, and the dataset's note."""
    import scipy.sparse as sp

    w = np.asarray(d.tables.df, dtype=np.float64)
    tot = max(w.sum(), 1.0)
    M = sp.csr_matrix(d.feats.M)
    share = np.asarray(M.T @ w[:M.shape[0]]).ravel() / tot
    has_titles = bool(d.meta.get("has_titles"))
    base: dict = {}
    for k, v, s in zip(d.feats.kind.tolist(), d.feats.value, share.tolist()):
        kind = "genre" if (k == "genre" and has_titles) else "category" if k == "genre" else k
        base[(kind, v if kind == "decade" else (int(v) if kind == "community" else str(v)))] = s
    pct = np.asarray(d.item_pct, dtype=np.float64)[:len(w)]
    base[("popularity", "popular")] = float(w[pct >= POPULAR_PCT].sum() / tot)
    base[("popularity", "niche")] = float(w[pct < NICHE_PCT].sum() / tot)
    return Vocabulary(base, has_titles, d.meta.get("vocabulary_note", ""), dict(d.meta.get("community_names", {})))


def _item_text(it: Mapping) -> str:
    return short_title(it["title"]) if it.get("title") else f"item {it.get('item_id')}"


def name_items(items: Sequence[Mapping], vocab: Vocabulary) -> tuple[str, list[Part], str, np.ndarray]:
    """(stem, parts, mode, carrying mask) of what the first TOP items share (`shared_parts`)."""
    items = list(items)[:TOP]
    parts, mode, mask = shared_parts(items, vocab)
    if mode == "none":
        what = "genre/decade/series/popularity" if vocab.has_titles else "category/co-purchase group/popularity"
        return f"no clear shared {what}", [], mode, mask
    return parts_text(parts, mode, items), parts, mode, mask


def shared_label(card: Mapping[str, Any], vocab: Vocabulary, generic_freq: float = 0.10) -> dict:
    """The offline-shared label of a card: what its top-10 items by count share (`shared_parts`), up to
    NAME_TITLES titles that carry it, and what its decoder promotes (card['promoted']) where that names
    something else. Returns name, description, parts (kind, value) and mode ('all' | 'any' | 'none')."""
    items = list(card.get("top_by_count") or [])[:TOP]
    stem, parts, mode, mask = name_items(items, vocab)
    carry = [it for it, m in zip(items, mask) if m] if mode != "none" else items
    ex = ", ".join(_item_text(it) for it in carry[:NAME_TITLES])
    if mode == "all" and vocab.has_titles:
        named = {p.value for p in parts if p.kind == "series"}
        extra = [(k, pos) for k, pos in find_series([it.get("title") for it in items]).items() if k not in named]
        if extra:
            k, pos = extra[0]
            stem += f", incl. {k} films ({len(pos)}/{len(items)})"
    name = stem + (f" (e.g. {ex})" if ex else "")
    out_stem = ""
    promoted = list(card.get("promoted") or [])
    if promoted:
        s, out_parts, m, _ = name_items(promoted, vocab)
        if m == "all" and any(p.kind != "popularity" for p in out_parts) and stem_of(s) != stem_of(stem):
            out_stem = s
            name += OUTPUT_SEP + s
    freq = float(card.get("freq", 0.0))
    if freq > generic_freq:
        name = f"generic ({100 * freq:.0f}% of histories): " + name
    n = len(items)
    if mode == "none":
        desc = f"Its top {n} items by activation count share no genre, decade, series or popularity band often " \
               f"enough to name (each thread below {THREAD_SHARE:.0%} of them)."
    elif mode == "any":
        desc = f"Its top {n} items by activation count fall into two threads: {stem[len('mixed: '):]}."
    else:
        desc = f"{int(mask.sum())} of its top {n} items by activation count are {stem}."
    groups = [vocab.community_names[p.value] for p in parts if p.kind == "community" and p.value in vocab.community_names]
    if groups:
        desc += " " + "; ".join(groups) + "."
    if out_stem:
        desc += f" Its decoder direction promotes other items: {out_stem}."
    if ex:
        desc += f" Typical: {', '.join(_item_text(it) for it in carry[:5])}."
    if vocab.note:
        desc += f" Note: {vocab.note}."
    return {"name": name, "description": desc, "parts": [(p.kind, p.value) for p in parts], "mode": mode}


# ----------------------------------------------------------------------------------------------------
# Parts of a free-text label (an LLM's, or the enrichment labeler's) and precision statistics


GENRE_WORDS = {"Animation": r"animat\w*|cartoon\w*", "Children's": r"children'?s?|kids?|family",
               "Comedy": r"comed\w*|comic|funny", "Sci-Fi": r"sci-?fi|science[- ]fiction", "Romance": r"romanc\w*|romantic",
               "Thriller": r"thriller\w*", "Horror": r"horror", "Western": r"western\w*", "War": r"\bwar\b",
               "Musical": r"musical\w*", "Documentary": r"documentar\w*", "Crime": r"crime|gangster\w*",
               "Mystery": r"myster\w*", "Adventure": r"adventur\w*", "Action": r"action", "Drama": r"drama\w*",
               "Fantasy": r"fantas\w*", "Film-Noir": r"noir"}


def parts_from_text(text: str, vocab: Vocabulary, items: Sequence[Mapping] = ()) -> tuple[list[Part], str]:
    """The parts a free-text label names (genres and their usual words, decades such as '1990s' or '90s',
    series of the latent's own top items or FRANCHISES, co-purchase groups, categories, popular / niche)
    and its mode ('any' for a label that starts with 'mixed' or joins things with 'or'). Words the
    vocabulary cannot check (moods, audiences) name nothing."""
    t = str(text or "")
    low = t.lower()
    parts: list[Part] = []
    if vocab.has_titles:
        for g, pat in GENRE_WORDS.items():
            if (not vocab.base or ("genre", g) in vocab.base) and re.search(rf"(?<![\w-])(?:{pat})", low):
                parts.append(Part("genre", g, g))
    for m in re.finditer(r"\b(?:(1[89]\d)0|(20[0-2])0|'?([0-9])0)s\b", low):
        dec = int((m.group(1) or m.group(2)) + "0") if (m.group(1) or m.group(2)) else 1900 + 10 * int(m.group(3))
        if (not vocab.base or ("decade", dec) in vocab.base) and Part("decade", dec, f"{dec}s") not in parts:
            parts.append(Part("decade", dec, f"{dec}s"))
    names = set(find_series([it.get("title") for it in items])) | set(FRANCHISES)
    for s in sorted(names):
        if re.search(rf"(?<!\w){re.escape(s.lower())}(?!\w)", low):
            parts.append(Part("series", s, s))
    for m in re.finditer(r"co-purchase group (\d+)", low):
        parts.append(Part("community", int(m.group(1)), m.group(0)))
    for m in re.finditer(r"\bcategory (\w+)", low):
        parts.append(Part("category", m.group(1), m.group(0)))
    if re.search(r"\b(popular|blockbuster\w*|mainstream|hits?|most-consumed)\b", low) and "not popular" not in low:
        parts.append(Part("popularity", "popular", "popular"))
    elif re.search(r"\b(niche|obscure|lesser-known|rare)\b", low):
        parts.append(Part("popularity", "niche", "niche"))
    mode = "any" if low.startswith("mixed") or re.search(r"\bor\b", low) else "all"
    return parts, mode


def label_precision_rows(cards: Sequence[Mapping], labels: Mapping[int, Any], vocab: Vocabulary,
                         generic: np.ndarray | None = None, held_top: Mapping[int, Sequence[Mapping]] | None = None
                         ) -> list[dict]:
    """One row per card: latent, stem, whether its label names something, its precision on the card's top
    TOP items by count and (with `held_top`) on its held-out top items. `labels[j]` is a `shared_label`
    dict (its parts are read directly) or a name (its parts are read off the text, `parts_from_text`)."""
    rows = []
    for c in cards:
        j = int(c["latent"])
        lab = labels.get(j)
        items = list(c.get("top_by_count") or [])[:TOP]
        if isinstance(lab, Mapping) and "parts" in lab:
            name = lab["name"]
            parts = [Part(k, v, "") for k, v in lab["parts"]]
            mode = lab.get("mode", "all")
        else:
            name = lab["name"] if isinstance(lab, Mapping) else (lab or "")
            input_side = str(name).split(OUTPUT_SEP)[0]
            if str(input_side).startswith("no clear"):
                parts, mode = [], "none"
            else:
                parts, mode = parts_from_text(re.sub(r"\s+\((?:e\.g\. )?[^()]*\)$", "", input_side), vocab, items)
        row = {"latent": j, "name": name, "stem": stem_of(name), "names_something": bool(parts),
               "precision": precision(parts, items, mode),
               "generic": bool(generic[j]) if generic is not None else False}
        if held_top is not None:
            row["precision_heldout"] = precision(parts, held_top.get(j, []), mode)
        rows.append(row)
    return rows


def precision_stats(rows: Sequence[Mapping], labeler: str) -> dict:
    """The summary's label-precision entry over the specific (non-generic) latents: median precision and
    share >= MIN_SHARE among labels that name something, share naming nothing ('no clear signal'), number of
    distinct stems and of specific latents; the same two precision numbers on held-out top items."""
    spec = [r for r in rows if not r["generic"]]
    named = [r for r in spec if r["names_something"]]
    p = np.array([r["precision"] for r in named], dtype=np.float64)
    out = {"labeler": labeler, "n_specific": len(spec), "n_named": len(named),
           "median": float(np.median(p)) if len(p) else None,
           "share_ge_0.6": float((p >= MIN_SHARE).mean()) if len(p) else None,
           "share_no_signal": float(1 - len(named) / len(spec)) if spec else None,
           "n_distinct_stems": len({r["stem"] for r in spec}),
           "share_distinct_stems": len({r["stem"] for r in spec}) / len(spec) if spec else None}
    if named and "precision_heldout" in named[0]:
        h = np.array([r["precision_heldout"] for r in named], dtype=np.float64)
        h = h[np.isfinite(h)]
        out["median_heldout"] = float(np.median(h)) if len(h) else None
        out["share_ge_0.6_heldout"] = float((h >= MIN_SHARE).mean()) if len(h) else None
    return out


def heldout_top_items(d, idx: np.ndarray, val: np.ndarray, hist: np.ndarray, top: int = TOP) -> dict[int, list[dict]]:
    """{latent: its top `top` items by activation count over held-out sequences} (card entries): the items
    a label is checked against when the labeler has not seen them."""
    import scipy.sparse as sp

    from .cards import item_entry
    from .dictionary import incidence

    idx, val = np.asarray(idx), np.asarray(val)
    n = len(idx)
    on = val > 0
    Z = sp.csr_matrix((np.ones(int(on.sum())), (idx[on].astype(np.int64), np.repeat(np.arange(n), idx.shape[1])[on.ravel()])),
                      shape=(d.m, n))
    C = (Z @ incidence(np.asarray(hist), d.n_items)).tocsr()
    out = {}
    for j in range(d.m):
        s = slice(C.indptr[j], C.indptr[j + 1])
        items, cnt = C.indices[s], C.data[s]
        o = np.lexsort((items, -cnt))[:top]
        if len(o):
            out[j] = [item_entry(d, int(items[k]), count=int(cnt[k])) for k in o]
    return out
