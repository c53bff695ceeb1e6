"""Known-answer tests for recsae_utils.concepts on small hand-built arrays."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact, spearmanr

from recsae_utils import cards as crd, detection as dtc, dictionary as dic, explain as xpl, specificity as spc

# ----------------------------------------------------------------------------------------------------
# A 4-sequence world small enough to count by hand
#   inst0: items {1, 2}   latent0 = 3.0
#   inst1: items {2, 3}   latent0 = 2.0
#   inst2: items {1,3,4}  latent0 = 1.0, latent1 = 0.5
#   inst3: items {4, 1}   latent1 = 5.0
# base rates: item1 3/4, item2 2/4, item3 2/4, item4 2/4. Latent 2 is dead.

HIST = np.array([[1, 2, 0], [2, 3, 0], [1, 3, 4], [4, 1, 0]])
IDX = np.array([[0, 1], [0, 1], [0, 1], [1, 0]])
VAL = np.array([[3.0, 0.0], [2.0, 0.0], [1.0, 0.5], [5.0, 0.0]])
ITEMS = pd.DataFrame({"item_id": [1, 2, 3, 4], "title": ["A (1995)", "B (1995)", "C (2001)", "D (1972)"],
                      "year": [1995, 1995, 2001, 1972],
                      "genres": [["Comedy"], ["Comedy", "Drama"], ["Drama"], ["Horror"]],
                      "popularity": [30, 20, 20, 10]})


@pytest.fixture(scope="module")
def tiny():
    return dic.build_dictionaries(IDX, VAL, HIST, ITEMS, m=3, top_n=2, item_pool=2)


def _rows(d, j):
    t = d.tables
    sl = slice(t.ptr[j], t.ptr[j + 1])
    return {int(i): (int(c), float(s), float(lf), float(ls))
            for i, c, s, lf, ls in zip(t.item[sl], t.count[sl], t.strength[sl], t.lift[sl], t.lift_shrunk[sl])}


def test_latent_stats():
    s = dic.latent_stats(IDX, VAL, 3)
    assert s.n_fire.tolist() == [3, 2, 0]
    np.testing.assert_allclose(s.freq, [0.75, 0.5, 0.0])
    np.testing.assert_allclose(s.mean_act[:2], [2.0, 2.75])
    assert math.isnan(s.mean_act[2])
    np.testing.assert_allclose(s.max_act, [3.0, 5.0, 0.0])


def test_top_sequences_order_and_ties():
    t = dic.top_sequences(IDX, VAL, 3, top_n=2)
    assert t.inst.tolist() == [[0, 1], [3, 2], [-1, -1]]
    np.testing.assert_allclose(t.val, [[3.0, 2.0], [5.0, 0.5], [0.0, 0.0]])
    assert t.count.tolist() == [2, 2, 0]
    # equal values: the lower instance comes first; a value of 0 never counts
    idx = np.array([[0], [0], [0], [0]])
    val = np.array([[1.0], [2.0], [2.0], [0.0]])
    t = dic.top_sequences(idx, val, 1, top_n=4)
    assert t.inst.tolist() == [[1, 2, 0, -1]]


def test_counts_strength_lift(tiny):
    r0 = _rows(tiny, 0)  # top sequences inst0, inst1 (N = 2)
    assert {i: v[0] for i, v in r0.items()} == {1: 1, 2: 2, 3: 1}
    assert {i: v[1] for i, v in r0.items()} == {1: 3.0, 2: 5.0, 3: 2.0}
    lifts = {i: v[2] for i, v in r0.items()}
    assert lifts == pytest.approx({1: (1 / 2) / 0.75, 2: (2 / 2) / 0.5, 3: (1 / 2) / 0.5})
    # shrunk lift (count + 1) / (N * base + 1) ranks the items
    assert {i: v[3] for i, v in r0.items()} == pytest.approx({1: 2 / 2.5, 2: 3 / 2, 3: 2 / 2})
    t = tiny.tables
    assert t.item[t.ptr[0]:t.ptr[1]].tolist() == [2, 3, 1]
    r1 = _rows(tiny, 1)  # top sequences inst3 (5.0), inst2 (0.5)
    assert {i: v[:2] for i, v in r1.items()} == {1: (2, 5.5), 3: (1, 0.5), 4: (2, 5.5)}
    assert r1[1][2] == pytest.approx(1 / 0.75) and r1[4][2] == pytest.approx(2.0)
    assert t.ptr[3] == t.ptr[2]  # dead latent: no rows


def test_item_pool_all_firings_known_answer():
    """item_pool = 0 (the default) counts over every firing: latent 0 fires on inst0-2 (3, 2, 1), holding
    {1, 2}, {2, 3}, {1, 3, 4}; item_pool = 1 keeps inst0 only. A pool equal to top_n counts exactly the
    items of the top-N sequences (counted here row by row from top_sequences)."""
    d = dic.build_dictionaries(IDX, VAL, HIST, ITEMS, m=3, top_n=2)
    r0 = _rows(d, 0)
    assert {i: v[:2] for i, v in r0.items()} == {1: (2, 4.0), 2: (2, 5.0), 3: (2, 3.0), 4: (1, 1.0)}
    assert r0[1][2] == pytest.approx((2 / 3) / 0.75) and d.tables.n_top.tolist() == [3, 2, 0]
    assert d.top.count.tolist() == [2, 2, 0]                       # the cards' top sequences stay top-N
    one = dic.build_dictionaries(IDX, VAL, HIST, ITEMS, m=3, top_n=2, item_pool=1)
    assert {i: v[0] for i, v in _rows(one, 0).items()} == {1: 1, 2: 1}
    f = dic.firing_index(IDX, VAL, 3)
    a, top = dic.firing_item_tables(f, dic.incidence(HIST, 5), 2), dic.top_sequences(IDX, VAL, 3, top_n=2)
    for j in range(3):
        want_c, want_s = {}, {}
        for inst, v in zip(top.inst[j, :top.count[j]], top.val[j, :top.count[j]]):
            for i in set(HIST[inst][HIST[inst] > 0].tolist()):
                want_c[i] = want_c.get(i, 0) + 1
                want_s[i] = want_s.get(i, 0.0) + float(v)
        sl = slice(a.ptr[j], a.ptr[j + 1])
        assert dict(zip(a.item[sl].tolist(), a.count[sl].tolist())) == want_c
        assert dict(zip(a.item[sl].tolist(), a.strength[sl].tolist())) == pytest.approx(want_s)
    assert a.n_top.tolist() == top.count.tolist()


def test_shrunk_lift_guards_single_occurrence():
    # 1,000 sequences; item 1 is in 1 of them (base 0.001), item 2 in 500 (base 0.5)
    n = 1000
    hist = np.zeros((n, 2), dtype=np.int64)
    hist[:500, 0] = 2
    hist[0, 1] = 1
    idx = np.zeros((n, 1), dtype=np.int64)
    val = np.zeros((n, 1))
    val[:10, 0] = np.arange(10, 0, -1)  # top 10: inst0 (holds items 1 and 2) .. inst9 (item 2)
    t = dic.firing_item_tables(dic.firing_index(idx, val, 1), dic.incidence(hist, 3), pool=10)
    got = dict(zip(t.item.tolist(), zip(t.lift.tolist(), t.lift_shrunk.tolist())))
    assert got[1][0] == pytest.approx(100.0)          # raw lift of one occurrence is huge ...
    assert got[1][1] == pytest.approx(2 / 1.01)       # ... the shrunk one is < 2
    assert got[2][0] == pytest.approx(2.0) and got[2][1] == pytest.approx(11 / 6)


def test_odds_ratio_and_fisher_hand_tables():
    assert dic.odds_ratio_2x2(3, 7, 10, 80) == pytest.approx(240 / 70)
    assert dic.odds_ratio_2x2(0, 5, 5, 5) == pytest.approx(0.5 * 5.5 / (5.5 * 5.5))  # Haldane-Anscombe
    assert dic.fisher_greater(2, 0, 0, 2) == pytest.approx(1 / 6)                    # 1 / C(4, 2)
    tabs = [(3, 7, 10, 80), (12, 30, 40, 300), (0, 4, 9, 9), (5, 5, 5, 5)]
    got = dic.fisher_greater(*np.array(tabs).T)
    want = [fisher_exact([[a, b], [c, d]], alternative="greater")[1] for a, b, c, d in tabs]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_enrichment_table_of_the_tiny_world(tiny):
    # latent 0: top slots {1,2} + {2,3} = 4, Comedy slots 3; all 9 slots, Comedy 5 -> [[3, 1], [2, 3]]
    f = tiny.feats.names.index("genre:Comedy")
    e = tiny.enrich
    assert (e.a[0, f], e.top_slots[0, f], e.all_with[f], e.all_slots[f]) == (3, 4, 5, 9)
    assert e.odds_ratio[0, f] == pytest.approx(4.5)
    assert e.p_value[0, f] == pytest.approx(45 / 126)
    dec = tiny.feats.names.index("decade:1990")
    assert e.a[0, dec] == 3  # items 1, 2, 2
    assert tiny.feats.value[dec] == 1990


def test_popularity_spearman_matches_scipy():
    rng = np.random.default_rng(1)
    n, m = 300, 5
    idx = np.stack([rng.choice(m, 2, replace=False) for _ in range(n)])
    val = rng.random((n, 2)) * (rng.random((n, 2)) < 0.6)
    seq_pop = rng.random(n)
    dense = np.zeros((n, m))
    np.put_along_axis(dense, idx, val, 1)
    rho = dic.popularity_spearman(dic.firing_index(idx, val, m), seq_pop)
    want = [spearmanr(dense[:, j], seq_pop)[0] for j in range(m)]
    np.testing.assert_allclose(rho, want, atol=1e-10)


def test_promoted_items_excludes_padding():
    E = np.array([[100.0, 100.0], [1, 0], [0, 1], [0.5, 0.5]])
    W = np.array([[1.0, 0.0], [0.0, 1.0]])
    ids, sc = dic.promoted_items(W, E, top=2)
    assert ids.tolist() == [[1, 3], [2, 3]]
    np.testing.assert_allclose(sc, [[1.0, 0.5], [1.0, 0.5]])


def test_instance_and_item_concepts():
    ic = xpl.instance_concepts(IDX, VAL, labels={0: "zero", 1: {"name": "one"}}, top=2, m=3)
    assert ic[ic.instance == 2][["latent", "rank", "label"]].values.tolist() == [[0, 1, "zero"], [1, 2, "one"]]
    assert ic[ic.instance == 0].latent.tolist() == [0]  # the inactive latent is not listed
    it = xpl.item_concepts(IDX, VAL, HIST, n_items=5, top=2, m=3)
    one = it[it.item_id == 1]  # item 1: inst0 (l0 3.0), inst2 (l0 1.0, l1 0.5), inst3 (l1 5.0)
    assert one.latent.tolist() == [1, 0]
    np.testing.assert_allclose(one.strength, [5.5, 4.0])
    np.testing.assert_allclose(one.share, [5.5 / 9.5, 4.0 / 9.5])


def test_explanations_hand_case_and_mask():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    b = np.array([0.5, 0.0])
    E = np.array([[0.0, 0.0], [1, 0], [0, 1], [1, 1]])
    items = pd.DataFrame({"item_id": [1, 2, 3], "title": ["One (1990)", "Two (1991)", "Three (1992)"]})
    df = xpl.explain_recommendations(np.array([0, 1]), np.array([2.0, 1.0]), W, b, E, items, top=1,
                                   labels=["first", "second", "third"])
    # x_hat = [2.5, 1]: item 3 scores 3.5 = 2 (latent 0) + 1 (latent 1) + 0.5 (bias)
    assert df.item_id.unique().tolist() == [3]
    assert df.score.iat[0] == pytest.approx(3.5)
    assert df[["latent", "contribution"]].values.tolist() == [[0, 2.0], [1, 1.0], [-1, 0.5]]
    lines = xpl.render_explanations(df)
    assert lines == ["recommended Three (1992) because of: first (+2.00), second (+1.00)"]
    mask = np.zeros((1, 4), bool)
    mask[0, 3] = True
    df = xpl.explain_recommendations(np.array([0, 1]), np.array([2.0, 1.0]), W, b, E, items, top=1, mask=mask)
    assert df.item_id.unique().tolist() == [1]


def test_contributions_sum_to_reconstructed_score():
    rng = np.random.default_rng(0)
    B, k, m, d, n_items = 6, 4, 20, 8, 50
    zi = np.stack([rng.choice(m, k, replace=False) for _ in range(B)])
    zv = rng.random((B, k)).astype(np.float32)
    zv[0, 1] = 0.0  # an inactive slot contributes nothing and is not listed
    W, b, E = rng.normal(size=(m, d)), rng.normal(size=d), rng.normal(size=(n_items, d))
    df = xpl.explain_recommendations(zi, zv, W, b, E, None, top=10)
    xhat = np.einsum("bk,bkd->bd", zv.astype(np.float64), W[zi]) + b
    full = xhat @ E.T
    g = df.groupby(["instance", "rank"])
    sums = g.contribution.sum()
    first = g.first()
    np.testing.assert_allclose(sums.values, first.score.values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(first.score.values, full[first.index.get_level_values(0), first.item_id.values])
    want_top = np.argsort(-full[:, 1:], axis=1)[:, :10] + 1
    assert first.item_id.values.reshape(B, 10).tolist() == want_top.tolist()
    assert g.size().min() == (k + 1) - 1 and g.size().max() == k + 1


# ----------------------------------------------------------------------------------------------------
# Specific concepts first


# latent 0: generic (fires on half the histories); 1: specific at 5%; 2: specific and rarer, at 0.1%; 3: dead
SPEC = spc.Specificity(spc.latent_specificity(np.array([0.5, 0.05, 0.001, 0.0])), np.array([True, False, False, False]))


def test_specificity_weights_and_planted_ranking():
    np.testing.assert_allclose(SPEC.weight, [np.log(2), np.log(20), np.log(1000), 0.0])
    # the generic latent has by far the largest activation, yet comes last, in its own background group;
    # latent 2 (0.5 x log 1000 = 3.45) outranks latent 1 (1.0 x log 20 = 3.00) despite half its activation
    idx, val = np.array([[0, 1, 2, 3]]), np.array([[10.0, 1.0, 0.5, 0.0]])
    ic = xpl.instance_concepts(idx, val, top=5, m=4, spec=SPEC)
    assert ic[["latent", "rank", "group"]].values.tolist() == [[2, 1, "specific"], [1, 2, "specific"],
                                                                [0, 1, "background"]]
    assert xpl.instance_concepts(idx, val, top=5, m=4).latent.tolist() == [0, 1, 2]   # without: by activation
    # `top` caps each group, the background is never dropped for specific ones
    assert xpl.instance_concepts(idx, val, top=1, m=4, spec=SPEC).latent.tolist() == [2, 0]


def test_item_concepts_specific_first():
    spec = spc.Specificity(np.array([1.0, 3.0, 1.0]), np.array([False, False, True]))
    it = xpl.item_concepts(IDX, VAL, HIST, n_items=5, top=2, m=3, spec=spec)
    one = it[it.item_id == 1]  # item 1: l0 4.0 (x1 = 4), l1 5.5 (x3 = 16.5); nothing generic holds it
    assert one[["latent", "rank", "group"]].values.tolist() == [[1, 1, "specific"], [0, 2, "specific"]]
    np.testing.assert_allclose(one.share, [5.5 / 9.5, 4.0 / 9.5])
    S = xpl.item_latent_strength(IDX, VAL, HIST, 5, 3)
    pd.testing.assert_frame_equal(it, xpl.item_concepts(None, None, None, 5, top=2, m=3, spec=spec, strength=S))
    g = xpl.item_concepts(IDX, VAL, HIST, n_items=5, top=2, m=3, spec=spc.Specificity(np.ones(3), np.array([True, False, False])))
    assert g[g.item_id == 1][["latent", "group"]].values.tolist() == [[1, "specific"], [0, "background"]]


def test_explanations_specific_first_still_add_up():
    rng = np.random.default_rng(3)
    B, k, m, d, n_items = 5, 6, 30, 8, 40
    zi = np.stack([rng.choice(m, k, replace=False) for _ in range(B)])
    zv = rng.random((B, k))
    W, b, E = rng.normal(size=(m, d)), rng.normal(size=d), rng.normal(size=(n_items, d))
    spec = spc.Specificity(spc.latent_specificity(rng.random(m) * 0.3), rng.random(m) < 0.4)
    plain = xpl.explain_recommendations(zi, zv, W, b, E, None, top=10)
    df = xpl.explain_recommendations(zi, zv, W, b, E, None, top=10, spec=spec)
    keys = ["instance", "rank"]
    # the same rows, only reordered: background + specific + bias = the score
    pd.testing.assert_frame_equal(df.drop(columns="group").sort_values(keys + ["latent"]).reset_index(drop=True),
                                  plain.sort_values(keys + ["latent"]).reset_index(drop=True))
    parts = df.pivot_table(index=keys, columns="group", values="contribution", aggfunc="sum", fill_value=0.0)
    score = df.groupby(keys).score.first()
    np.testing.assert_allclose(parts["specific"] + parts["background"] + parts["bias"], score, rtol=1e-12, atol=1e-12)
    assert (parts["background"] != 0).any() and (parts["specific"] != 0).any()
    for _, g in df.groupby(keys, sort=False):   # per item: specific (by score), background (by value), bias
        grp = g.group.tolist()
        assert grp == sorted(grp, key=["specific", "background", "bias"].index) and grp[-1] == "bias"
        sp_rows = g[g.group == "specific"]
        assert np.all(np.diff(spec.score(sp_rows.latent, sp_rows.contribution)) <= 0)
    lines = xpl.render_explanations(df, n_reasons=2)
    i0 = df[(df.instance == 0) & (df["rank"] == 1)]
    spec0, bg0 = i0[i0.group == "specific"], i0[i0.group == "background"]
    assert len(bg0) and len(spec0) >= 2   # this seed: both groups present for the first item
    want = ", ".join(f"{lb} ({c:+.2f})" for lb, c in zip(spec0.label[:2], spec0.contribution[:2]))
    assert lines[0] == (f"recommended {i0.title.iat[0]} because of: {want}; "
                        f"background: {len(bg0)} generic concepts ({bg0.contribution.sum():+.2f})")
    assert xpl.render_explanations(df, 3, specific_first=False) == xpl.render_explanations(plain, 3)


def test_head_shares_known_answer():
    generic = np.array([True, True, False, False, False])
    # user 7: values by latent 0:9, 1:8, 2:1, 3:0.5; user 8: 1:4, 4:2 (and a negative value)
    key = np.array([7, 7, 7, 7, 8, 8, 8])
    lat = np.array([0, 1, 2, 3, 1, 4, 2])
    val = np.array([9.0, 8.0, 1.0, 0.5, 4.0, 2.0, -1.0])
    g, v = spc.head_shares(key, lat, val, generic, top=2)   # by value: user 7 [0, 1], user 8 [1, 4]
    assert g == pytest.approx((1.0 + 0.5) / 2)
    assert v == pytest.approx((17 / 18.5 + 6 / 6) / 2)
    spec = spc.Specificity(np.ones(5), generic)
    g, v = spc.head_shares(key, lat, val, generic, spec, top=2)   # specific first: user 7 [2, 3], user 8 [4, 2]
    assert g == 0.0
    assert v == pytest.approx((1.5 / 18.5 + 2 / 6) / 2)
    assert np.isnan(spc.head_shares(np.array([]), np.array([]), np.array([]), generic)[0])


def test_dense_to_sparse():
    h = np.array([[1.0, 2, 3], [3, 2, 1], [2, 2, 2]])
    idx, val = dtc.dense_to_sparse(h, 2, mean=np.full(3, 2.0), std=np.ones(3))
    assert idx.shape == (3, 2) and val.shape == (3, 2)
    assert idx.tolist() == [[2, 1], [0, 1], [0, 1]]
    np.testing.assert_allclose(val, [[1, 0], [1, 0], [0, 0]])
    idx, val = dtc.dense_to_sparse(h, 2, mean=np.full(3, 2.0), std=np.ones(3), both_signs=True)
    assert idx[0].tolist() == [2, 3] and val[0].tolist() == [1, 1]  # dim 0's negative side is unit 3
    rng = np.random.default_rng(0)
    h = rng.normal(5.0, [1, 10, 100], size=(400, 3))
    idx, val = dtc.dense_to_sparse(h, 1)  # standardised: each dimension wins about a third of the time
    assert np.bincount(idx[:, 0], minlength=3).min() > 90


# ----------------------------------------------------------------------------------------------------
# A planted world for cards, labels and detection


def _planted(seed=0, n_tr=4000, n_h=2000, n_items=61, L=8):
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_items)
    genres = [["Comedy"] if i <= 6 else [["Drama", "Action", "Horror"][i % 3]] for i in ids]
    w = np.exp(rng.normal(0, 0.7, len(ids)))
    w /= w.sum()

    def hists(n):
        ln = rng.integers(2, L + 1, n)
        h = np.zeros((n, L), dtype=np.int64)
        for length in range(2, L + 1):  # distinct items per window, one draw per length
            rows = np.flatnonzero(ln == length)
            keys = rng.random((len(rows), len(ids))) ** (1 / w)
            h[rows, :length] = ids[np.argsort(-keys, axis=1)[:, :length]]
        return h

    htr, hh = hists(n_tr), hists(n_h)
    pop = np.bincount(htr.ravel(), minlength=n_items)[1:]
    items = pd.DataFrame({"item_id": ids, "title": [f"Movie {i} ({1970 + 10 * (i % 3)})" for i in ids],
                          "year": 1970 + 10 * (ids % 3), "genres": genres, "popularity": pop,
                          "movie_id": ids})

    def acts(h, bins):
        n = len(h)
        comedy = ((h >= 1) & (h <= 6)).any(1)
        val = np.zeros((n, 3))
        val[:, 0] = np.where(comedy, rng.uniform(0.5, 1.5, n), 0.0)          # fires exactly on Comedy
        val[:, 1] = np.where(rng.random(n) < 0.3, rng.uniform(0.5, 1.5, n), 0.0)  # random
        p = 0.1 + 0.08 * bins                                                  # depends on popularity bin only
        val[:, 2] = np.where(rng.random(n) < p, rng.uniform(0.5, 1.5, n), 0.0)
        return np.tile(np.arange(3), (n, 1)), val

    Xtr, Xh = dic.incidence(htr, n_items), dic.incidence(hh, n_items)
    ptr_, ph_ = dic.sequence_popularity(Xtr, np.r_[0, pop]), dic.sequence_popularity(Xh, np.r_[0, pop])
    edges = np.nanquantile(ptr_, np.linspace(0, 1, dtc.POP_BINS + 1)[1:-1])
    itr, vtr = acts(htr, np.searchsorted(edges, ptr_, side="right"))
    ih, vh = acts(hh, np.searchsorted(edges, ph_, side="right"))
    return items, htr, itr, vtr, hh, ih, vh


@pytest.fixture(scope="module")
def planted():
    items, htr, itr, vtr, hh, ih, vh = _planted()
    d = dic.build_dictionaries(itr, vtr, htr, items, m=4, top_n=50)
    return d, (hh, ih, vh)


CARD_KEYS = {"latent", "n_fire", "freq", "n_pool", "top_items", "top_by_count", "top_by_strength", "genre_enrichment",
             "decade_enrichment", "community_enrichment", "popularity_pct", "context", "examples"}


def test_cards_follow_the_schema(planted, tiny):
    d, _ = planted
    cards = crd.latent_cards(d)
    assert [c["latent"] for c in cards] == [0, 1, 2]  # latent 3 is dead
    json.dumps(cards, allow_nan=False)
    for c in cards:
        assert set(c) == CARD_KEYS
        assert isinstance(c["n_fire"], int) and isinstance(c["freq"], float)
        assert isinstance(c["popularity_pct"], float) and 0 <= c["popularity_pct"] <= 100
        assert c["context"] == ""
        assert 0 < len(c["top_items"]) <= 20
        for it in c["top_items"]:
            assert set(it) == {"item_id", "title", "year", "genres", "pct", "community", "count", "strength", "lift"}
            assert it["community"] is None and 0 <= it["pct"] <= 100
            assert isinstance(it["item_id"], int) and isinstance(it["title"], str) and isinstance(it["year"], int)
            assert isinstance(it["genres"], list) and all(isinstance(g, str) for g in it["genres"])
            assert isinstance(it["count"], int) and isinstance(it["strength"], float)
        for e in c["genre_enrichment"]:
            assert set(e) == {"genre", "odds_ratio", "p_value"} and e["odds_ratio"] > 1
        for e in c["decade_enrichment"]:
            assert set(e) == {"decade", "odds_ratio", "p_value"} and isinstance(e["decade"], int)
        counts = [it["count"] for it in c["top_by_count"]]
        assert counts == sorted(counts, reverse=True) and len(counts) == len(c["top_items"])
        strengths = [it["strength"] for it in c["top_by_strength"]]
        assert strengths == sorted(strengths, reverse=True) and c["community_enrichment"] == []
        assert 0 < len(c["examples"]) <= 5
        acts = [x["activation"] for x in c["examples"]]
        assert acts == sorted(acts, reverse=True)
        for x in c["examples"]:
            assert set(x) == {"history_titles", "activation"} and 0 < len(x["history_titles"]) <= 9
    comedy = cards[0]
    assert comedy["genre_enrichment"][0]["genre"] == "Comedy"
    assert all(g["genres"] == ["Comedy"] for g in comedy["top_items"][:6])
    # tiny world: example titles are the last <= 9 items, oldest first
    tc = crd.latent_cards(tiny)
    assert tc[0]["examples"][0]["history_titles"] == ["B (1995)", "A (1995)"]


def test_offline_label_deterministic_and_names_planted_genre(planted):
    d, _ = planted
    cards = crd.latent_cards(d)
    a, b = crd.offline_label(cards[0]), crd.offline_label(json.loads(json.dumps(cards[0])))
    assert a == b and set(a) == {"name", "description"}
    # fires on 37% > GENERIC_FREQ; names its three best exemplar movies (top items by shrunk lift, all Comedy)
    assert re.fullmatch(r"generic \(37% of histories\): Comedy \(Movie \d, Movie \d, Movie \d\)", a["name"]), a["name"]
    assert "Comedy" in a["description"] and "Typical titles: Movie " in a["description"]
    ex = crd.label_exemplars(cards[0])
    assert 0 < len(ex) <= crd.LABEL_MAX_ITEMS and all(1 <= e["item_id"] <= 6 for e in ex)
    sig0 = crd.label_signature(cards[0])
    assert set(sig0["items"]) == {e["item_id"] for e in ex}
    assert sig0["items"] == pytest.approx({e["item_id"]: math.log(e["lift_shrunk"]) for e in ex})
    assert "Comedy" not in crd.offline_label(cards[1])["name"]
    card = {"latent": 7, "n_fire": 10, "freq": 0.01, "top_items": [], "popularity_pct": 80.0, "context": "",
            "examples": [], "genre_enrichment": [{"genre": "Drama", "odds_ratio": 2.0, "p_value": 1e-9},
                                                 {"genre": "War", "odds_ratio": 3.0, "p_value": 1e-5},
                                                 {"genre": "Crime", "odds_ratio": 5.0, "p_value": 0.2}],
            "decade_enrichment": [{"decade": 1970, "odds_ratio": 1.8, "p_value": 1e-6}]}
    # War (p 1e-5 > LABEL_P) and the 1970s (odds ratio 1.8 < LABEL_MIN_OR) are not named; pct 80 is
    assert crd.offline_label(card)["name"] == "popular, Drama"
    sig = crd.label_signature(card)
    assert sig["items"] == {}  # no top items, no exemplars
    assert sig["genres"] == pytest.approx({"War": math.log(3.0), "Drama": math.log(2.0)})
    assert sig["popularity"]["band"] == "popular" and sig["popularity"]["weight"] > 0


def test_grocery_style_cards_and_labels():
    items = pd.DataFrame({"item_id": [1, 2, 3, 4], "i_category": ["Snacks", "Snacks", "Tea", "Coffee"],
                          "r_complement": ["[3, 4]", "[]", "[1]", None], "r_substitute": [[2], [], [], [3]],
                          "popularity": [30, 20, 20, 10]})
    d = dic.build_dictionaries(IDX, VAL, HIST, items, m=3, top_n=2)
    cards = crd.latent_cards(d)
    json.dumps(cards, allow_nan=False)
    c0 = cards[0]
    assert set(c0) == CARD_KEYS and c0["decade_enrichment"] == []
    assert all(it["title"] is None and it["year"] is None for it in c0["top_items"])
    assert c0["top_items"][0]["genres"] == ["Snacks"]  # item 2 ranks first, its category stands in for genres
    assert "complements 3, 4" in c0["context"] and "substitutes 2" in c0["context"]
    assert c0["examples"][0]["history_titles"] == ["item 2 [Snacks]", "item 1 [Snacks]"]
    lab = crd.offline_label(c0)
    assert lab == crd.offline_label(c0) and "categor" in lab["description"]
    card = dict(c0, genre_enrichment=[{"genre": "Snacks", "odds_ratio": 4.0, "p_value": 1e-9}])
    assert crd.offline_label(card)["name"] == "generic (75% of histories): Snacks"


def test_flags_generic_and_popularity():
    rng = np.random.default_rng(0)
    n = 200
    hist = np.stack([rng.choice(np.arange(4, 41), 3, replace=False) for _ in range(n)])
    hist[:5] = [1, 2, 3]                      # the only sequences with the three blockbusters
    idx = np.tile(np.arange(3), (n, 1))
    val = np.zeros((n, 3))
    val[:, 0] = 1.0 + np.arange(n) / n        # fires on every sequence: generic by frequency
    val[:5, 1] = 1.0                          # fires on the blockbuster sequences: popularity latent
    val[50:60, 2] = 1.0                       # 10 random sequences, ~25 distinct of 40 items: generic by coverage
    items = pd.DataFrame({"item_id": np.arange(1, 41), "popularity": np.r_[[100, 100, 100], np.ones(37)]})
    d = dic.build_dictionaries(idx, val, hist, items, m=3, top_n=10)
    assert d.coverage[1] == pytest.approx(3 / 40) and d.coverage[2] > dic.GENERIC_COVERAGE
    assert d.generic.tolist() == [True, False, True]
    assert d.popularity_pct[1] > 95 and 30 < d.popularity_pct[2] < 70
    assert d.popularity_flag.tolist() == [False, True, False]


def test_detection_planted_vs_random(planted):
    d, (hh, ih, vh) = planted
    cards = crd.latent_cards(d)
    res = dtc.detection_scores(d, cards, ih, vh, hh).set_index("latent")
    com, rnd = res.loc[0], res.loc[1]
    assert com.n_pos > 300 and com.n_neg > 300 and com.n_pos + com.n_neg == len(hh)
    assert com.auc_random > 0.99 and com.auc_matched > 0.99
    assert com.bal_acc_random >= 0.9 and com.bal_acc_matched >= 0.9
    assert abs(rnd.auc_random - 0.5) < 0.1 and abs(rnd.bal_acc_random - 0.5) < 0.1
    assert abs(rnd.auc_matched - 0.5) < 0.1
    assert np.isnan(res.loc[3].auc_random) and res.loc[3].n_pos == 0  # dead latent


def test_detection_popularity_matching(planted):
    """Latent 2 fires with a probability that depends on the popularity bin only: a pure popularity
    signature separates it from random negatives, but not from popularity-matched ones."""
    d, (hh, ih, vh) = planted
    sig = {"latent": 2, "genres": {}, "decades": {}, "popularity": {"band": "popular", "pct": 70.0, "weight": 1.0}}
    res = dtc.detection_scores(d, [sig], ih, vh, hh).set_index("latent")
    assert res.loc[2].auc_random > 0.62
    assert abs(res.loc[2].auc_matched - 0.5) < 0.06
    assert not res.loc[[0, 1]].has_signature.any()
    np.testing.assert_allclose(res.loc[[0, 1]].auc_random, 0.5)  # no signature: constant scores


def test_tables_and_save(planted, tmp_path):
    d, _ = planted
    labels = [crd.offline_label(c) for c in crd.latent_cards(d)]
    tabs = dic.dictionary_tables(d, labels=labels, promoted=(np.array([[1, 2]] * 4), np.ones((4, 2))))
    assert set(tabs) == {"latents", "latent_items", "genre_enrichment", "decade_enrichment", "promoted"}
    li = tabs["latent_items"]
    assert {"latent", "item_id", "count", "strength", "lift", "rank"} <= set(li.columns)
    assert (li.groupby("latent")["rank"].min() == 1).all()
    assert tabs["latents"].label.iat[0] == labels[0]["name"]
    ge = tabs["genre_enrichment"]
    assert ge[(ge.latent == 0) & (ge.genre == "Comedy")].significant.item()
    paths = dic.save_dictionaries(tabs, tmp_path)
    assert len(paths) == 10
    back = pd.read_parquet(tmp_path / "latent_items.parquet")
    pd.testing.assert_frame_equal(back, li.reset_index(drop=True))
    assert len(pd.read_csv(tmp_path / "genre_enrichment.csv")) == len(ge)


def test_label_exemplars_thresholds_and_names():
    """Exemplars: count >= EXEMPLAR_MIN_COUNT and shrunk lift (count + 1) / (count / lift + 1) >=
    EXEMPLAR_MIN_LIFT, best shrunk lift first; the name lists the first LABEL_NAME_ITEMS titles without year."""
    top = [{"item_id": 11, "title": "Tombstone (1993)", "count": 20, "lift": 10.0},     # shrunk 21/3 = 7
           {"item_id": 12, "title": "Unforgiven (1992)", "count": 10, "lift": 10.0},    # 11/2 = 5.5
           {"item_id": 13, "title": "Rare (1990)", "count": 2, "lift": 50.0},           # count < 3
           {"item_id": 14, "title": "Dances with Wolves (1990)", "count": 6, "lift": 3.0},  # 7/3 = 2.33
           {"item_id": 15, "title": "Common (1995)", "count": 30, "lift": 1.5},         # 31/21 < 2
           {"item_id": 16, "title": "Maverick (1994)", "count": 4, "lift": 4.0}]        # 5/2 = 2.5
    card = {"latent": 3, "freq": 0.01, "popularity_pct": 50.0, "top_items": top,
            "genre_enrichment": [{"genre": "Western", "odds_ratio": 8.0, "p_value": 1e-12}],
            "decade_enrichment": [{"decade": 1990, "odds_ratio": 2.0, "p_value": 1e-9}]}
    ex = crd.label_exemplars(card)
    assert [e["item_id"] for e in ex] == [11, 12, 16, 14]
    assert [e["lift_shrunk"] for e in ex] == pytest.approx([7.0, 5.5, 2.5, 7 / 3])
    lab = crd.offline_label(card)
    assert lab["name"] == "Western, 1990s (Tombstone, Unforgiven, Maverick)"
    assert "Dances with Wolves (1990) (2.3x base rate)" in lab["description"]
    sig = crd.label_signature(json.loads(json.dumps(card)))
    assert sig["items"] == pytest.approx({11: math.log(7.0), 12: math.log(5.5), 16: math.log(2.5),
                                          14: math.log(7 / 3)})
    # a JSON round trip of the signature turns item ids into strings; the matrix reads them back
    Wi = dtc.item_signature_matrix([json.loads(json.dumps(sig))], n_items=20, m=5).toarray()
    assert Wi[11, 3] == pytest.approx(math.log(7.0)) and Wi[:, [0, 1, 2, 4]].sum() == 0


def test_detection_through_exemplar_item():
    """A latent firing exactly on sequences containing a planted movie (item 7, genre Drama like a third
    of the catalogue, no decade or popularity signal) is detected through the exemplar term alone."""
    items, htr, _, _, hh, _, _ = _planted(seed=1)

    def acts(h):
        n = len(h)
        has = (h == 7).any(1)
        val = np.zeros((n, 2))
        val[:, 0] = np.where(has, 1.0 + (h == 7).argmax(1) / 10, 0.0)      # fires exactly on item 7
        val[:, 1] = np.where(np.arange(n) % 3 == 0, 1.0, 0.0)                # unrelated
        return np.tile(np.arange(2), (n, 1)), val

    (itr, vtr), (ih, vh) = acts(htr), acts(hh)
    d = dic.build_dictionaries(itr, vtr, htr, items, m=2, top_n=50)
    card = crd.latent_cards(d)[0]
    sig = crd.label_signature(card)
    assert 7 in sig["items"]
    assert "Movie 7" in crd.offline_label(card)["name"]
    # the exemplar term alone: only item 7 (the signature's weight), nothing else
    only = {"latent": 0, "items": {7: sig["items"][7]}, "genres": {}, "decades": {},
            "popularity": {"band": "mid", "pct": 50.0, "weight": 0.0}}
    res = dtc.detection_scores(d, [only], ih, vh, hh).set_index("latent")
    r = res.loc[0]
    assert r.has_signature and r.n_pos == (hh == 7).any(1).sum() > 100
    assert r.auc_random == pytest.approx(1.0) and r.bal_acc_random == pytest.approx(1.0)
    assert r.bal_acc_matched == pytest.approx(1.0)
    # without the exemplar term the genre/decade signature of the same card does much worse
    coarse = dict(sig, items={})
    r2 = dtc.detection_scores(d, [coarse], ih, vh, hh).set_index("latent").loc[0]
    assert r2.auc_random < 0.8
    # the full label signature keeps the planted movie detectable
    r3 = dtc.detection_scores(d, [card], ih, vh, hh).set_index("latent").loc[0]
    assert r3.auc_random > 0.95


def test_score_summary_min_positives():
    sc = pd.DataFrame({"latent": [0, 1, 2, 3], "n_pos": [10, 4, 5, 0],
                       "bal_acc_random": [0.9, 0.1, 0.7, np.nan], "auc_random": [0.95, 0.1, 0.8, np.nan],
                       "bal_acc_matched": [0.8, 0.1, 0.6, np.nan], "auc_matched": [0.9, 0.1, 0.7, np.nan]})
    s = dtc.score_summary(sc)
    assert s["n_scored"] == 2 and s["median_bal_acc_random"] == pytest.approx(0.8)
    assert s["mean_auc_matched"] == pytest.approx(0.8) and s["share_bal_acc_ge_0.8_random"] == 0.5
    assert dtc.score_summary(sc, min_pos=1)["n_scored"] == 3
    assert dtc.score_summary(sc, live=np.array([True, True, False, False]))["n_scored"] == 1


def test_window_sweep_finds_a_last_item_latent():
    """A latent that fires exactly when the MOST RECENT item is a Comedy (items 1-6): on the last item alone
    its label detects it perfectly; on whole histories (older Comedies fire nothing) it does worse. A
    latent firing on Comedy anywhere in the history shows the opposite. `full` rows are reused as given."""
    items, htr, _, _, hh, _, _ = _planted(seed=2)

    def acts(h):
        n = len(h)
        val = np.zeros((n, 2))
        val[:, 0] = np.where((h[:, 0] >= 1) & (h[:, 0] <= 6), 1.0, 0.0)               # last item only
        val[:, 1] = np.where(((h >= 1) & (h <= 6)).any(1), 1.0, 0.0)                  # anywhere
        return np.tile(np.arange(2), (n, 1)), val

    (itr, vtr), (ih, vh) = acts(htr), acts(hh)
    sw = dtc.window_sweep({"planted": (itr, vtr, ih, vh, 2)}, htr, hh, items, top_n=50, seed=0, windows=(1,))
    assert sw["window"].tolist() == [1, htr.shape[1]] and set(sw["model"]) == {"planted"}
    d1, _, s1 = dtc.dictionary_and_scores(itr, vtr, htr[:, :1], ih, vh, hh[:, :1], items, 2, 50)
    dL, _, sL = dtc.dictionary_and_scores(itr, vtr, htr, ih, vh, hh, items, 2, 50)
    assert s1.loc[0, "bal_acc_random"] == pytest.approx(1.0) and sL.loc[0, "bal_acc_random"] < 0.9
    assert sL.loc[1, "bal_acc_random"] > s1.loc[1, "bal_acc_random"]
    row = sw.set_index("window").loc[1]
    assert row["n_scored"] == 2 and row["median_bal_acc_random"] == pytest.approx(
        np.median([s1.loc[0, "bal_acc_random"], s1.loc[1, "bal_acc_random"]]))
    reused = dtc.window_sweep({"planted": (itr, vtr, ih, vh, 2)}, htr, hh, items, 50, 0, windows=(),
                            full={"planted": (dL, sL.assign(bal_acc_random=0.123))})
    assert reused["median_bal_acc_random"].tolist() == [pytest.approx(0.123)]
    # per latent: each picks its window on TRAINING data; the last-item latent reads w = 1, the other all 8
    assert s1.loc[0, "bal_acc_train"] == pytest.approx(1.0) and sL.loc[0, "bal_acc_train"] < 0.99
    kept = {}
    sw = dtc.window_sweep({"planted": (itr, vtr, ih, vh, 2)}, htr, hh, items, top_n=50, seed=0, windows=(1,),
                        per_latent=True, keep=kept)
    best = kept[("planted", 0.0)].set_index("latent")
    assert best["window"].tolist() == [1, htr.shape[1]]
    assert best.loc[0, "bal_acc_random"] == s1.loc[0, "bal_acc_random"]
    assert best.loc[1, "bal_acc_random"] == sL.loc[1, "bal_acc_random"]
    row = sw[sw["window"] == 0].iloc[0]
    assert row["median_bal_acc_random"] == pytest.approx(np.median(best["bal_acc_random"]))
    assert row["median_bal_acc_random"] > max(sw[sw["window"] > 0]["median_bal_acc_random"])


def test_best_window_scores_known_answer():
    """Per latent the window with the highest training balanced accuracy wins (ties: the longer window; NaN
    never wins), and its held-out columns come along unchanged."""
    w1 = pd.DataFrame({"latent": [0, 1, 2], "bal_acc_train": [0.9, 0.8, np.nan], "bal_acc_random": [0.1, 0.2, 0.3]})
    w9 = pd.DataFrame({"latent": [0, 1, 2], "bal_acc_train": [0.7, 0.8, 0.6], "bal_acc_random": [0.4, 0.5, 0.6]})
    b = dtc.best_window_scores({1: w1, 9: w9})
    assert b["latent"].tolist() == [0, 1, 2]
    assert b["window"].tolist() == [1, 9, 9] and b["bal_acc_random"].tolist() == [0.1, 0.5, 0.6]
    with pytest.raises(ValueError, match="bal_acc_train"):
        dtc.best_window_scores({1: w1.drop(columns="bal_acc_train")})


def test_strong_thresholds_known_answer():
    """Per-latent lower q-quantile of its own positive activations (values sorted descending per latent)."""
    idx = np.array([[0, 1], [0, 1], [0, 1], [0, 2]])
    val = np.array([[4.0, 0.5], [3.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    f = dic.firing_index(idx, val, 3)
    assert dtc.strong_thresholds(f, 0.0).tolist() == [0.0, 0.0, 0.0]
    t = dtc.strong_thresholds(f, 0.5)          # latent 0: [4, 3, 2, 1] -> upper half starts at 3 (floor)
    assert t[0] == 3.0 and t[1] == 0.5 and np.isinf(t[2])
    assert dtc.strong_thresholds(f, 0.75)[0] == 4.0


def test_strong_positives_drop_weak_noise_firings():
    """Latent 0 fires strongly (2-3) exactly on Comedy histories and weakly (0-0.5) on a random 40% of the
    rest. On all firings the weak noise are positives no label can tell; on each latent's upper half
    (strong_q = 0.5) the positives are the Comedy ones and the weak firings sit on neither side, so detection
    gets near perfect. The same numbers come out of window_sweep's strong_q rows."""
    items, htr, _, _, hh, _, _ = _planted(seed=3)
    rng = np.random.default_rng(0)

    def acts(h):
        n = len(h)
        comedy = ((h >= 1) & (h <= 6)).any(1)
        noise = ~comedy & (rng.random(n) < 0.4)
        v = np.where(comedy, rng.uniform(2, 3, n), np.where(noise, rng.uniform(0.01, 0.5, n), 0.0))
        return np.zeros((n, 1), np.int64), v[:, None]

    (itr, vtr), (ih, vh) = acts(htr), acts(hh)
    d, cards, s_all = dtc.dictionary_and_scores(itr, vtr, htr, ih, vh, hh, items, 1, 50)
    s_strong = dtc.detection_scores(d, cards, ih, vh, hh, strong_q=0.5)
    comedy_h = ((hh >= 1) & (hh <= 6)).any(1)
    assert s_all.loc[0, "n_pos"] == (vh[:, 0] > 0).sum()
    assert s_strong.loc[0, "n_neg"] == (vh[:, 0] == 0).sum()        # weak firings are not negatives either
    assert 0 < s_strong.loc[0, "n_pos"] <= comedy_h.sum()
    assert s_strong.loc[0, "bal_acc_random"] > 0.95 > s_all.loc[0, "bal_acc_random"] + 0.1
    sw = dtc.window_sweep({"m": (itr, vtr, ih, vh, 1)}, htr, hh, items, 50, 0, windows=(), strengths=(0.0, 0.5))
    assert sw["strong_q"].tolist() == [0.0, 0.5]
    sw2 = dtc.window_sweep({"m": (itr, vtr, ih, vh, 1)}, htr, hh, items, 50, 0, windows=(1, 3), strengths=(0.0, 0.5),
                         strong_windows=(1,))
    assert list(zip(sw2["window"], sw2["strong_q"])) == [(1, 0.0), (1, 0.5), (3, 0.0), (8, 0.0), (8, 0.5)]
    assert sw["median_bal_acc_random"].tolist() == pytest.approx([s_all.loc[0, "bal_acc_random"],
                                                                  s_strong.loc[0, "bal_acc_random"]])



def test_judge_probes_top_activations_and_non_activating_negatives(tiny):
    """Probes on held-out instances: each live latent's strongest activating instances (best first) and
    non-activating ones; histories oldest first, the 'last item' is the given top-1 recommendation."""
    top1 = np.array([4, 3, 2, 1])
    probes = xpl.judge_probes(tiny, IDX, VAL, HIST, top1, seed=0, n_pos=2, n_neg=5)
    by = {j: [p for p in probes if p["latent"] == j] for j in (0, 1)}
    assert {p["latent"] for p in probes} == {0, 1}                       # latent 2 is dead
    pos0 = [p for p in by[0] if p["activating"]]
    assert [p["history_titles"] for p in pos0] == [["B (1995)", "A (1995)"], ["C (2001)", "B (1995)"]]  # 3.0, 2.0
    assert [p["last_item"] for p in pos0] == ["D (1972)", "C (2001)"]
    neg1 = [p for p in by[1] if not p["activating"]]
    assert len(neg1) == 2 and {tuple(p["history_titles"]) for p in neg1} == {("B (1995)", "A (1995)"),
                                                                            ("C (2001)", "B (1995)")}


def test_generic_slot_share_counts_the_firings_of_generic_latents(tiny):
    """Latent 0 fires 3 times, latent 1 twice (active slots only: value > 0), latent 2 never: with latent 0
    generic it holds 3 of the 5 slots; with none generic, 0; the count equals the frontier's slot count."""
    from dataclasses import replace

    from recsae_utils.concepts import generic_slot_share

    d = replace(tiny, generic=np.array([True, False, False]))
    assert generic_slot_share(d) == pytest.approx(3 / 5)
    assert generic_slot_share(replace(tiny, generic=np.zeros(3, bool))) == 0.0
    active = VAL > 0
    assert generic_slot_share(d) == (d.generic[IDX] & active).sum() / active.sum()


def test_label_precision_section_on_the_planted_world(planted):
    from recsae_utils import concepts as cc, naming

    d, (hh, ih, vh) = planted
    b = cc.Built(d, crd.latent_cards(d))
    out = cc.label_precision({"sae": cc.Model("SAE", "3 latents", ih, vh, ih, vh, 4)}, {"sae": b}, hh)
    assert set(out) == {"SAE", "SAE, enrichment labeler"}
    for s in out.values():
        assert {"median", "share_ge_0.6", "share_no_signal", "n_distinct_stems", "n_specific", "labeler",
                "median_heldout", "share_ge_0.6_heldout"} <= set(s) or s["n_named"] == 0
        assert s["n_specific"] == int((~d.generic[d.live]).sum())
    lab = naming.shared_label(b.cards[0], naming.vocabulary_of(d))     # latent 0 fires exactly on comedies
    assert ("genre", "Comedy") in lab["parts"]
    held = naming.heldout_top_items(d, ih, vh, hh)
    fired = hh[vh[:, 0] > 0]                                           # brute force: latent 0's held-out top 10
    cnt = np.bincount(np.concatenate([np.unique(r[r > 0]) for r in fired]), minlength=d.n_items)
    want = sorted(range(1, d.n_items), key=lambda i: (-cnt[i], i))[:10]
    assert [it["item_id"] for it in held[0]] == want and [it["count"] for it in held[0]] == cnt[want].tolist()
    assert 3 not in held                                                # latent 3 never fires
