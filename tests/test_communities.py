"""communities.py: co-purchase communities recovered on a planted graph, used as a vocabulary by item
features (hence the yardstick and detection), cards and the offline-shared labeler."""
from __future__ import annotations

import numpy as np
import pandas as pd

from recsae_utils import communities, naming
from recsae_utils.dictionary import item_features
from recsae_utils.yardstick import concept_set


def cliques(n_groups: int = 2, n_per: int = 8) -> pd.DataFrame:
    """Items in groups of n_per bought together (group g: items g * n_per + 1 ..), one weak bridge from each
    group to the first; category 0 for all but item 3 (like Grocery)."""
    groups = [list(range(g * n_per + 1, (g + 1) * n_per + 1)) for g in range(n_groups)]
    rows = []
    for group in groups:
        for i in group:
            sub = [1] if (i == group[0] and i != 1) else []   # the bridge, in one also-viewed list only
            rows.append({"item_id": i, "i_category": 0 if i != 3 else 5, "r_complement": [j for j in group if j != i],
                         "r_substitute": sub, "popularity": 100 - i})
    return pd.DataFrame(rows)


def test_planted_two_cliques_recovered_deterministically():
    items = cliques(2)
    n = 17
    c = communities.find_communities(communities.copurchase_edges(items, n), n, seed=0, resolution=1.0)
    assert c[0] == -1                                       # padding id: in no community
    assert len(set(c[1:9])) == 1 and len(set(c[9:17])) == 1 and c[1] != c[9]
    assert set(c[1:].tolist()) == {0, 1}
    for seed in (1, 2):                                    # same partition whatever the seed on this graph
        c2 = communities.find_communities(communities.copurchase_edges(items, n), n, seed=seed, resolution=1.0)
        assert np.array_equal(c2 == c2[1], c == c[1])
    names = communities.community_names(c, items)
    assert names[int(c[1])].startswith(f"co-purchase group {int(c[1])} (8 items, e.g. items 1, 2, 3)")
    assert communities.category_note(items).startswith("categories are ids only, with no names: 15 of 16 items "
                                                       "share category 0")
    assert communities.category_note(items.assign(title="x")) == ""


def test_communities_are_features_and_concepts():
    items = cliques(6)                                     # the default resolution needs a graph of some size
    f = item_features(items, 49)
    comm = [nm for nm in f.names if nm.startswith("community:")]
    assert comm == [f"community:{k}" for k in range(6)] and "decade" not in set(f.kind)
    M = f.M.toarray()[:, [f.names.index(c) for c in comm]]
    assert all(len(np.unique(M[1 + 8 * g: 9 + 8 * g].argmax(1))) == 1 for g in range(6))   # one per clique
    cs = concept_set(f, 49, min_items=5)
    assert set(comm) <= set(cs.names) and "genre:0" not in cs.names                          # category 0: > half


def test_label_names_a_community():
    vocab = naming.Vocabulary({("community", 0): 0.2, ("community", 1): 0.2, ("category", "0"): 0.95,
                               ("popularity", "popular"): 0.5, ("popularity", "niche"): 0.5}, has_titles=False,
                              note="categories are ids only")
    its = [{"item_id": i, "title": None, "year": None, "genres": ["0"], "pct": None, "community": 0 if i < 8 else 1,
            "count": 20 - i} for i in range(10)]
    lab = naming.shared_label({"latent": 3, "freq": 0.01, "top_by_count": its}, vocab)
    assert lab["name"].startswith("co-purchase group 0 (8/10) (e.g. item 0, item 1, item 2)")
    assert "category" not in lab["name"] and "decade" not in lab["description"]
    assert "categories are ids only" in lab["description"]
    rows = naming.label_precision_rows([{"latent": 3, "top_by_count": its}], {3: lab}, vocab)
    assert rows[0]["precision"] == 0.8
