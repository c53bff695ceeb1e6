"""The original study's views (recsae_utils.poster): every latent's top items by count and by strength, the
"offbeat 2000 comedies" rule on planted latents, and poster_views.md (four views, escaped data strings)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from recsae_utils import dictionary as dic, poster

# the 4-sequence world of test_concepts: latent 0 fires on inst0 (3.0), inst1 (2.0), inst2 (1.0)
from test_concepts import HIST, IDX, ITEMS, VAL  # noqa: E402


def test_top_items_by_count_and_by_strength_known_answer():
    # latent 7: item 1 count 5 strength 1.0; item 2 count 1 strength 9.0; item 3 count 5 strength 2.0
    top = poster.latent_top_items([7, 7, 7, 8], [1, 2, 3, 4], [5, 1, 5, 2], [1.0, 9.0, 2.0, 0.5],
                                  titles=["", "one", "two", "three", "four"], k=2)
    assert list(top.columns) == ["latent", "view", "rank", "item", "title", "value"]
    c = top[(top.latent == 7) & (top.view == "count")]
    assert c["item"].tolist() == [3, 1]                 # tie on count 5: the larger strength first
    assert c["value"].tolist() == [5, 5] and c["title"].tolist() == ["three", "one"]
    s = top[(top.latent == 7) & (top.view == "strength")]
    assert s["item"].tolist() == [2, 3] and s["rank"].tolist() == [1, 2]   # k = 2 cuts item 1
    assert top[top.latent == 8]["item"].tolist() == [4, 4]


def test_top_items_of_a_dictionary_are_not_the_lift_cut():
    d = dic.build_dictionaries(IDX, VAL, HIST, ITEMS, m=3, top_n=2, item_pool=0)   # all firings
    top = poster.top_items_of(d)
    c0 = top[(top.latent == 0) & (top.view == "count")]
    # latent 0 over inst0..2: item 1 in 2 of them (3.0 + 1.0), item 2 in 2 (3.0 + 2.0), item 3 in 2, item 4 in 1
    assert c0["item"].tolist() == [2, 1, 3, 4] and c0["value"].tolist() == [2, 2, 2, 1]
    s0 = top[(top.latent == 0) & (top.view == "strength")]
    assert s0["item"].tolist()[:2] == [2, 1] and s0["value"].tolist()[:2] == [5.0, 4.0]
    assert 2 not in set(top.latent)                     # dead latent: no rows
    assert (c0["title"].iloc[0]) == "B (1995)"


def _planted():
    """Items 0..29: 0-9 Comedy 2000 (0-4 popular, 5-9 niche), 10-29 Drama 1990. Latent 1: six niche-and-popular
    2000 comedies; latent 2: the same count (six) of the niche ones -> wins the tie; latent 3: all ten, but
    generic; latent 4: two only."""
    items = pd.DataFrame({"item_id": np.arange(30), "title": [f"T{i}" for i in range(30)],
                          "year": [2000] * 10 + [1990] * 20,
                          "genres": [["Comedy"]] * 10 + [["Drama"]] * 20,
                          "pop_pct": [90.0] * 5 + [10.0] * 5 + [50.0] * 20})
    tops = {1: [0, 1, 2, 3, 4, 5] + list(range(10, 14)), 2: [5, 6, 7, 8, 9, 0] + list(range(14, 18)),
            3: list(range(10)), 4: [0, 1] + list(range(18, 26))}
    lat = np.concatenate([[j] * 10 for j in tops])
    item = np.concatenate(list(tops.values()))
    count = np.tile(np.arange(10, 0, -1), 4)
    return poster.latent_top_items(lat, item, count, count * 1.0), items


def test_offbeat_rule_on_planted_latents():
    top, items = _planted()
    off = poster.find_offbeat(top, items, eligible=[1, 2, 4])         # 3 is generic: not eligible
    assert off["latent"] == 2 and off["matches"] == 6 and off["of"] == 10   # tie with 1: lower popularity wins
    assert poster.find_offbeat(top, items, eligible=[1, 2, 3, 4])["latent"] == 3
    assert poster.find_offbeat(top, items, eligible=[4]) is None       # 2 of 10 < OFFBEAT_MIN
    assert poster.find_offbeat(top, items.drop(columns=["year", "genres"]), eligible=[1, 2]) is None


def test_poster_views_four_views_and_escaping(tmp_path):
    top, items = _planted()
    hostile = '"><img src=x onerror=alert(1)>|'
    uv = pd.DataFrame({"user": 36, "split": "test", "rank": [1, 1], "latent": [2, 3],
                       "activation": [1.5, 4.0], "label": ["x", "y"], "group": ["specific", "background"]})
    mv = pd.DataFrame({"item_id": 5, "title": hostile, "rank": [1], "latent": [1], "strength": [12.0],
                       "label": ["z"], "group": ["specific"]})
    names = {1: "comedy *bold*", 2: hostile, 3: "generic thing"}
    out = poster.write_poster_views(tmp_path, {}, top, uv, mv, names, [3], items, "offline", [1, 2, 4])
    text = (tmp_path / "concepts" / "poster_views.md").read_text()
    assert out["offbeat"]["latent"] == 2 and out["study_labeler"] == "ChatGPT"
    for head in ("## 1 ·", "## 2 · User 36", "## 3 · Top movies of the study's concept ids", "## 4 ·"):
        assert head in text
    assert "<img" not in text and "&lt;img" in text and "\\*bold\\*" in text
    assert "ChatGPT" in text and "`offline` labeler" in text
    # user 36 by activation, the study's order: our generic latent 3 (4.0) before the specific latent 2 (1.5)
    row1 = next(line for line in text.splitlines() if line.startswith("| 1 | 1746 |"))
    assert "| 3 | 4.00 |" in row1
    csv = pd.read_csv(tmp_path / "concepts" / "latent_top_items.csv")
    assert len(csv) == len(top) and set(csv["view"]) == {"count", "strength"}
    out = poster.write_poster_views(tmp_path / "g", {}, top, uv, mv, names, [3], items, "offline", [1], titled=False)
    assert out["views"] is None and not (tmp_path / "g" / "concepts" / "poster_views.md").exists()
