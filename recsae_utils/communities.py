"""Co-purchase communities: a second concept vocabulary for datasets whose item metadata says little.

Amazon Grocery's categories are ids only, and one id holds almost every item, so a genre-like vocabulary
has one value. Its item_meta also lists, per item, items also bought (`r_complement`) and also viewed
(`r_substitute`) with it. Those lists make an undirected item graph (an edge per listed pair, weight = how
many lists name the pair); Louvain modularity communities of that graph (networkx, fixed seed, so the
same graph always gives the same communities) are groups of items bought together: a vocabulary with
many values, which labels, the yardstick and detection use like genres (`dictionary.item_features` adds
them as the 'community' kind). The resolution (RESOLUTION) is raised above Louvain's usual 1.0 so that the
communities are small enough for a label to name. Community ids are ordered by size, largest first (ties: smallest item id).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter

import numpy as np
import pandas as pd

LIST_COLUMNS = ("r_complement", "r_substitute")   # also bought, also viewed
MIN_SIZE = 2            # a community of one item names nothing
NAME_ITEMS = 3          # items (or title words) in a community's name
RESOLUTION = 3.0        # Louvain resolution: on Grocery 47 communities (median 157 items, 41 with >= 30) rather than
                        # 25 at 1.0 (largest 1,287 items, too coarse to name); 10.0 gives 124 and a slower yardstick
_CACHE: dict[str, np.ndarray] = {}


def _ids(v) -> list[int]:
    if isinstance(v, str):
        return [int(x) for x in re.findall(r"\d+", v)]
    if v is None or (isinstance(v, float) and np.isnan(v)) or not hasattr(v, "__iter__"):
        return []
    return [int(x) for x in v]


def has_lists(items: pd.DataFrame) -> bool:
    return any(c in items.columns for c in LIST_COLUMNS)


def copurchase_edges(items: pd.DataFrame, n_items: int) -> dict[tuple[int, int], int]:
    """{(i, j) with i < j: number of also-bought / also-viewed lists that link i and j}; ids outside
    [1, n_items) and self-links are dropped."""
    w: Counter = Counter()
    ids = items["item_id"].to_numpy().astype(np.int64).tolist()
    for col in LIST_COLUMNS:
        if col not in items.columns:
            continue
        for i, lst in zip(ids, items[col].tolist()):
            for j in _ids(lst):
                if 0 < j < n_items and j != i:
                    w[(min(i, j), max(i, j))] += 1
    return dict(w)


def find_communities(edges: dict[tuple[int, int], int], n_items: int, seed: int = 0,
                     resolution: float = RESOLUTION) -> np.ndarray:
    """(n_items,) community id per item (-1: in no community of MIN_SIZE or more): Louvain on the weighted
    graph, seeded; ids by size, largest first, ties by smallest member."""
    import networkx as nx

    G = nx.Graph()
    G.add_weighted_edges_from((i, j, float(c)) for (i, j), c in sorted(edges.items()))
    comms = nx.community.louvain_communities(G, weight="weight", resolution=resolution, seed=seed) if len(G) else []
    comms = sorted((sorted(c) for c in comms if len(c) >= MIN_SIZE), key=lambda c: (-len(c), c[0]))
    out = np.full(n_items, -1, dtype=np.int64)
    for k, c in enumerate(comms):
        out[np.asarray(c, dtype=np.int64)] = k
    return out


def item_communities(items: pd.DataFrame, n_items: int, seed: int = 0) -> np.ndarray:
    """`find_communities` of the items' co-purchase graph, computed once per process for the same lists."""
    h = hashlib.sha256()
    for col in LIST_COLUMNS:
        if col in items.columns:
            h.update(col.encode())
            h.update(pd.util.hash_pandas_object(items[["item_id"]].assign(x=items[col].astype(str)),
                                                index=False).to_numpy().tobytes())
    key = f"{h.hexdigest()}-{n_items}-{seed}"
    if key not in _CACHE:
        _CACHE[key] = find_communities(copurchase_edges(items, n_items), n_items, seed)
    return _CACHE[key]


def community_names(comm: np.ndarray, items: pd.DataFrame, top: int = NAME_ITEMS) -> dict[int, str]:
    """{community id: name}: 'co-purchase group <id>: <its most common title words>' where items have titles,
    else 'co-purchase group <id> (<n> items, e.g. items a, b, c)', the most popular members first."""
    ids = items["item_id"].to_numpy().astype(np.int64)
    pop = dict(zip(ids.tolist(), items["popularity"].tolist())) if "popularity" in items.columns else {}
    titles = dict(zip(ids.tolist(), items["title"].tolist())) if "title" in items.columns else {}
    out = {}
    for c in np.unique(comm[comm >= 0]).tolist():
        members = np.flatnonzero(comm == c).tolist()
        if titles:
            words = Counter(w for i in members for w in set(re.findall(r"[a-z]{4,}", str(titles.get(i, "")).lower())))
            out[c] = f"co-purchase group {c}: " + ", ".join(w for w, _ in words.most_common(top))
        else:
            best = sorted(members, key=lambda i: (-pop.get(i, 0), i))[:top]
            out[c] = f"co-purchase group {c} ({len(members)} items, e.g. items {', '.join(map(str, best))})"
    return out


def category_note(items: pd.DataFrame) -> str:
    """The sentence a report says once about a dataset whose categories are bare ids (no titles): how many items
    share the most common one. Empty for datasets with titles or without categories."""
    if "title" in items.columns or "i_category" not in items.columns or not len(items):
        return ""
    vc = items["i_category"].astype(str).value_counts()
    return (f"categories are ids only, with no names: {vc.iloc[0]:,} of {len(items):,} items share category "
            f"{vc.index[0]}, so labels name co-purchase groups (communities of the also-bought / also-viewed graph) "
            "and popularity instead; there are no release years, so no decades")
