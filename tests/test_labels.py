"""Offline labels that name only what is materially enriched (known answers on planted latents), detection in
the two vocabularies, and the label-free genre coherence."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from recsae_utils import cards as crd, coherence as coh, detection as dtc, dictionary as dic

GENRES = ["Comedy", "Drama", "Horror", "Western"]
DECADES = [1970, 1980, 1990]


def _world(seed=0, n_tr=6000, n_h=3000, L=8):
    """120 movies, genre = i % 4 and decade = (i // 4) % 3 independent of each other, popularity a random
    permutation (independent of both). Histories come from four kinds of viewers: 1990s fans (any genre),
    Horror fans (any decade), blockbuster fans (the 15 most popular movies), 8% each, and everyone else
    (uniform).
    Latent 0 fires on the 1990s fans, 1 on the Horror fans, 2 on the blockbuster fans, 3 on a random 5%."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, 121)
    genre = np.array(GENRES)[ids % 4]
    decade = np.array(DECADES)[(ids // 4) % 3]
    pop = rng.permutation(len(ids)) + 1.0
    pools = [ids[decade == 1990], ids[genre == "Horror"], ids[np.argsort(-pop)[:15]], ids]

    def hists(n):
        kind = rng.choice(4, n, p=[0.08, 0.08, 0.08, 0.76])
        h = np.stack([rng.choice(pools[k], L, replace=False) for k in kind])
        return h.astype(np.int64), kind

    def acts(kind):
        n = len(kind)
        val = np.zeros((n, 4))
        for j in range(3):
            val[:, j] = np.where(kind == j, rng.uniform(0.5, 1.5, n), 0.0)
        val[:, 3] = np.where(rng.random(n) < 0.05, rng.uniform(0.5, 1.5, n), 0.0)
        return np.tile(np.arange(4), (n, 1)), val

    items = pd.DataFrame({"item_id": ids, "title": [f"Film {i} ({decade[i - 1] + 5})" for i in ids],
                          "year": decade + 5, "genres": [[g] for g in genre], "popularity": pop})
    (htr, ktr), (hh, kh) = hists(n_tr), hists(n_h)
    return items, htr, acts(ktr), hh, acts(kh)


@pytest.fixture(scope="module")
def world():
    items, htr, (itr, vtr), hh, (ih, vh) = _world()
    d = dic.build_dictionaries(itr, vtr, htr, items, m=4, top_n=50)
    return d, crd.latent_cards(d), (hh, ih, vh)


def test_planted_latents_are_named_by_their_concept(world):
    d, cards, _ = world
    names = [crd.offline_label(c)["name"] for c in cards]
    assert names == [crd.offline_label(json.loads(json.dumps(c)))["name"] for c in cards]    # deterministic
    decade, horror, popular, noise = names
    assert decade.startswith("1990s (Film ") and "Horror" not in decade and "popular" not in decade, decade
    assert horror.startswith("Horror (Film ") and "1990s" not in horror and "popular" not in horror, horror
    assert popular.startswith("popular") and "generic" not in popular, popular
    assert noise == "no clear genre/decade/popularity signal"                 # and no exemplar items either
    assert decade.count(",") == horror.count(",") == crd.LABEL_NAME_ITEMS - 1  # exemplars after the concept
    assert [p["kind"] for p in crd.label_concept(cards[0])] == ["decade"]
    assert [p["value"] for p in crd.label_concept(cards[1])] == ["Horror"] and crd.label_concept(cards[3]) == []
    desc = crd.offline_label(cards[1])["description"]
    assert desc.startswith("Fires on histories with more Horror titles (odds ratio ") and "Typical titles: Film" in desc
    assert "no genre, decade or popularity enrichment" in crd.offline_label(cards[3])["description"]


def test_label_names_strongest_first_and_only_material_parts():
    """The issue's latent 744: Sci-Fi at odds ratio 1.8 was named ahead of its decade at 5.6."""
    top = [{"item_id": 1, "title": "Wonder Boys (2000)", "year": 2000, "count": 30, "lift": 9.0},
           {"item_id": 2, "title": "Small Time Crooks (2000)", "year": 2000, "count": 20, "lift": 8.0},
           {"item_id": 3, "title": "2010 (1984)", "year": 1984, "count": 10, "lift": 6.0}]
    card = {"latent": 744, "freq": 0.01, "popularity_pct": 52.0, "top_items": top,
            "genre_enrichment": [{"genre": "Sci-Fi", "odds_ratio": 1.8, "p_value": 1e-30}],
            "decade_enrichment": [{"decade": 2000, "odds_ratio": 5.6, "p_value": 1e-40}]}
    lab = crd.offline_label(card)
    assert lab["name"] == "2000s (Wonder Boys, Small Time Crooks, 2010)"
    assert "Also enriched, not named: Sci-Fi (odds ratio 1.8)" in lab["description"]
    # ranked by effect size across kinds; a weakly significant genre stays out; popularity on the odds scale
    card = dict(card, popularity_pct=70.0, genre_enrichment=[
        {"genre": "Drama", "odds_ratio": 2.5, "p_value": 1e-12}, {"genre": "War", "odds_ratio": 9.0, "p_value": 1e-5},
        {"genre": "Crime", "odds_ratio": 7.0, "p_value": 1e-9}])
    assert crd.popularity_odds_ratio(70.0) == pytest.approx(3.87, abs=0.01)
    assert crd.offline_label(card)["name"] == "Crime, 2000s, popular, Drama (Wonder Boys, Small Time Crooks, 2010)"
    sig = crd.metadata_signature(card)
    assert sig["items"] == {} and sig["genres"] == pytest.approx({"Crime": math.log(7.0), "Drama": math.log(2.5)})
    assert sig["decades"] == pytest.approx({2000: math.log(5.6)}) and sig["popularity"]["band"] == "popular"
    assert crd.label_signature(card, "metadata") == sig and crd.label_signature(card)["items"]   # exemplars keep items
    # popularity at pct 55 is not material: no band named, no weight
    mild = dict(card, popularity_pct=55.0, genre_enrichment=[], decade_enrichment=[])
    assert crd.offline_label(mild)["name"] == "no clear genre/decade/popularity signal: Wonder Boys, Small Time Crooks, 2010"
    assert crd.metadata_signature(mild)["popularity"] == {"band": "mid", "pct": 55.0, "weight": 0.0}
    with pytest.raises(ValueError, match="vocabulary"):
        crd.label_signature(card, "titles")


def test_category_labels_without_titles_or_decades():
    card = {"latent": 2, "freq": 0.3, "popularity_pct": 50.0, "decade_enrichment": [],
            "top_items": [{"item_id": 9, "title": None, "year": None, "count": 9, "lift": 5.0}],
            "genre_enrichment": [{"genre": "Snacks", "odds_ratio": 1.7, "p_value": 1e-20}]}
    assert crd.offline_label(card)["name"] == "generic (30% of histories): no clear category/popularity signal: item 9"
    card["genre_enrichment"][0]["odds_ratio"] = 4.0
    lab = crd.offline_label(card)
    assert lab["name"] == "generic (30% of histories): Snacks (item 9)" and "Snacks items (odds ratio 4.0)" in lab["description"]
    card["genre_enrichment"][0]["genre"] = "12"                  # Grocery's categories are ids
    lab = crd.offline_label(card)
    assert lab["name"] == "generic (30% of histories): category 12 (item 9)" and "category 12 items (" in lab["description"]


def test_metadata_vocabulary_scores(world):
    """Metadata-only signatures detect the decade and genre latents from what their names say; the latent with
    no clear signal has no signature and scores 0.5; exemplar scores keep their default."""
    d, cards, (hh, ih, vh) = world
    meta = dtc.detection_scores(d, cards, ih, vh, hh, vocabulary="metadata").set_index("latent")
    ex = dtc.detection_scores(d, cards, ih, vh, hh).set_index("latent")
    pd.testing.assert_frame_equal(ex, dtc.detection_scores(d, cards, ih, vh, hh, vocabulary="exemplars").set_index("latent"))
    assert meta.loc[0].auc_random > 0.95 and meta.loc[1].auc_random > 0.95 and meta.loc[2].auc_random > 0.9
    assert meta.loc[[0, 1, 2]].has_signature.all() and not meta.loc[3].has_signature
    assert meta.loc[3].bal_acc_random == 0.5 and meta.loc[3].auc_random == 0.5
    assert crd.label_signature(cards[0])["items"] and not crd.metadata_signature(cards[0])["items"]
    summ = dtc.metadata_scores(d, ih, vh, hh, cards)
    assert set(summ) == {"all", "upper_half"}
    assert summ["all"] == dtc.score_summary(meta.reset_index(), d.stats.n_fire > 0)
    assert summ["upper_half"]["n_scored"] == 4 and summ["all"]["share_bal_acc_ge_0.8_random"] == 0.75


def test_mean_pairwise_jaccard_known_answers():
    G = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.float32)   # item 0 padding, item 4 no genre
    sets = np.array([[1, 2, 3], [1, 1, -1], [1, 4, -1], [4, 4, -1], [1, 3, -1]])
    got = coh.mean_pairwise_jaccard(G, sets)
    np.testing.assert_allclose(got[[0, 2, 4]], [(0.5 + 0 + 0.5) / 3, 0.0, 0.0])
    assert np.isnan(got[1]) and np.isnan(got[3])          # a repeated item and a genre-less pair are no pairs
    assert coh.mean_pairwise_jaccard(G, sets[None]).shape == (1, 5)


def test_genre_coherence_planted(world):
    d, _, _ = world
    top = coh.top_items(d, 10)
    assert (top[1] >= 0).all() and all(d.meta["genres"][i] == ["Horror"] for i in top[1])
    df = coh.genre_coherence(d, seed=0).set_index("latent")
    assert df.loc[1].coherence == 1.0 and df.loc[1].random_p95 < 1.0         # Horror fans: one genre
    assert abs(df.loc[0].coherence - df.loc[0].random_mean) < 0.2            # 1990s fans: any genre
    pd.testing.assert_frame_equal(df, coh.genre_coherence(d, seed=0).set_index("latent"))   # seeded
    s = coh.coherence_summary(df.reset_index())
    assert s["n"] == 4 and 0.25 <= s["share_above_random_p95"] <= 0.75 and s["median_random"] < s["median"] + 1


def test_vocabulary_summary_adds_keys_only():
    """The summary's per-model scores keep every existing key and value; the vocabularies come as new keys,
    the exemplar upper half read off the window sweep's whole-history row."""
    from recsae_utils import concepts

    row = {"n_scored": 10.0, "median_bal_acc_random": 0.8, "share_bal_acc_ge_0.8_random": 0.5}
    scores = {"SAE": dict(row), "raw h_u dimensions": dict(row)}
    before = json.loads(json.dumps(scores))
    summ = {"n_scored": 10, "median_bal_acc_random": 0.6, "share_bal_acc_ge_0.8_random": float("nan")}
    vocab = {n: {"metadata": {"all": summ, "upper_half": dict(summ, median_bal_acc_random=0.7)},
                 "coherence": {"n": 3, "median": 0.5}} for n in scores}
    sweep = pd.DataFrame([{"window": w, "strong_q": q, "model": n, "sae": "2048", "n_scored": 9.0,
                           "median_bal_acc_random": 0.9 + w / 100 + q}
                          for w in (0, 1, 20) for q in (0.0, dtc.STRONG_Q) for n in scores])
    coh_out = concepts.vocabulary_summary(scores, vocab, sweep)
    assert coh_out == {n: {"n": 3, "median": 0.5} for n in scores}
    for n in scores:
        assert {k: scores[n][k] for k in before[n]} == before[n]
        assert scores[n]["metadata"] == {"n_scored": 10.0, "median_bal_acc_random": 0.6,
                                         "share_bal_acc_ge_0.8_random": None}
        assert scores[n]["metadata_upper_half"]["median_bal_acc_random"] == 0.7
        assert scores[n]["exemplars_upper_half"] == {"n_scored": 9.0, "median_bal_acc_random": pytest.approx(1.6)}
    json.dumps(scores, allow_nan=False)
