"""Stage 06's orchestration (steering.py) and the browser's steering examples: known answers on planted codes
and item tables (labels from planted firings, unit selection, the card's latent, the fast per-latent path
against the plain `recommend` call)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsae_utils import dictionary as DI
from recsae_utils import interventions as I
from recsae_utils import steering as ST
from test_interventions import planted_ctx


def planted_firings(n=400, seed=0):
    """Items 1-10 Comedy of the 1990s, 11-20 Drama of the 1970s. Latent 0 fires on the comedy-only histories,
    latent 1 on every history (generic), latent 2 never; latent 3 on the drama-only ones."""
    rng = np.random.default_rng(seed)
    comedy = rng.random(n) < 0.3
    hist = np.where(comedy[:, None], rng.integers(1, 11, (n, 5)), rng.integers(11, 21, (n, 5)))
    idx = np.tile(np.array([1, 0, 3]), (n, 1))
    val = np.stack([np.ones(n), np.where(comedy, 2.0, 0.0), np.where(comedy, 0.0, 1.5)], 1)
    val[~comedy, 2] = 0.0   # latent 3 would be generic (70%): keep it off except on a few drama histories
    val[np.flatnonzero(~comedy)[:30], 2] = 1.0
    items = pd.DataFrame({"item_id": np.arange(1, 21), "genres": [["Comedy"]] * 10 + [["Drama"]] * 10,
                          "year": [1995] * 10 + [1975] * 10, "popularity": np.ones(20)})
    return idx, val.astype(np.float32), hist, items, comedy


def test_unit_labels_and_pick_units_on_planted_firings():
    idx, val, hist, items, comedy = planted_firings()
    d = DI.build_dictionaries(idx, val, hist, items, 4)
    feats = d.feats
    ul = ST.unit_labels(d)
    names = lambda j: sorted(feats.names[c] for c in ul.labels[j])
    assert names(0) == ["decade:1990", "genre:Comedy"]
    assert names(3) == ["decade:1970", "genre:Drama"]
    assert ul.freq[2] == 0 and ul.labels[2] == [] and ul.freq[1] == 1.0
    assert set(ul.concepts[0].tolist()) <= set(range(1, 11)) and len(ul.concepts[0])
    assert set(ul.top_count[3].tolist()) <= set(range(11, 21))
    # latent 0 fires on ~30% (generic), latent 1 on all, latent 2 never: only latent 3 is eligible
    assert ST.pick_units(ul.freq, ul.labels, 10, 0).tolist() == [3]
    many = ST.pick_units(np.full(50, 0.05), [[1]] * 50, 10, seed=4)
    assert len(many) == 10 and np.all(np.diff(many) > 0)
    assert np.array_equal(many, ST.pick_units(np.full(50, 0.05), [[1]] * 50, 10, seed=4))   # seeded


def test_browser_examples_match_recommend_and_move_the_star():
    ctx = planted_ctx()
    lat = [0, 5, 9, 31]
    ex = I.browser_examples(ctx, lat, row=3, beta=2.0)
    user = int(ctx.users[3])
    assert set(ex) == set(lat)
    for j in lat:
        rec = I.recommend(ctx, user, steer={j: 2.0})
        assert ex[j]["user"] == user and ex[j]["before"] == rec.item_before.tolist()
        assert ex[j]["after"] == rec.item_after.tolist()
    assert ex[5]["after"][0] == 7                    # the planted latent points at item 7
    before, after = I.steer_each(ctx, 3, [], 1.0)
    assert after.shape == (0, 10) and len(before) == 10


def _result(units, gains, rq, top_count, freq):
    steer = pd.DataFrame({"unit": units, "gain": gains, "random_q": rq, "steerable": np.array(gains) > rq})
    ul = ST.UnitLabels(np.asarray(freq, float), [[]] * len(freq), [np.zeros(0, int)] * len(freq),
                       [np.asarray(t) for t in top_count], np.zeros(len(freq), bool))
    return ST.ModelResult(np.asarray(units), len(units), pd.DataFrame(), steer, ul, np.zeros((1, 0)), np.zeros((1, 0)))


def test_card_latent_by_titles_then_most_steerable():
    items = pd.DataFrame({"item_id": [1, 2, 3, 4], "title": ["Wonder Boys (2000)", "Best in Show (2000)",
                                                              "Heat (1995)", "Jaws (1975)"]})
    res = _result([0, 1, 2], [0.1, 0.3, 0.05], [0.2, 0.2, 0.2], [[3, 4], [4], [1, 2, 3]], [0.01, 0.02, 0.03])
    assert ST.card_latent(items, res) == (2, "top items overlap 2 of 4 titles")
    res = _result([0, 1, 2], [0.1, 0.3, 0.05], [0.2, 0.2, 0.2], [[3, 4], [4], [3]], [0.01, 0.02, 0.03])
    assert ST.card_latent(items, res) == (1, "most steerable")               # no overlap: best margin
    assert ST.card_latent(items.drop(columns="title"), res) == (1, "most steerable")   # Grocery: no titles


def test_summary_section_from_a_dose_table():
    ctx = planted_ctx()
    rows = np.arange(60)
    units = np.array([5, 9])
    labels = np.zeros((len(ctx.E), 2), bool)
    labels[7, 0] = labels[1:20, 1] = True
    inactive = I.inactive_rows(ctx.z_idx[rows], ctx.z_val[rows], units)
    dose = I.dose_response(ctx, rows, ctx.W_dec, units, inactive, labels, labels)
    rand = I.random_gains(ctx, rows, inactive, labels, n_random=20, seed=1)
    r = ST.ModelResult(units, 2, dose, I.steerability(dose, rand, units), None, labels, labels)
    table = ST.dose_table({"sae": r})
    assert len(table) == len(I.BETAS) and (table["units"] == 2).all()
    res = ST.StageResult({"sae": r}, table, pd.DataFrame(), pd.DataFrame({"factor": [1.0], "ndcg@10": [0.1]}),
                         I.recommend(ctx, int(ctx.users[0]), steer={5: 1.0}), {"latent": 5, "user": 1})
    s = ST.summary(res)
    m = s["models"]["SAE"]
    assert m["n_units"] == 2 and set(m["label_gain"]) == {"0.1", "0.25", "0.5", "1", "2"}
    assert m["label_gain"]["1"] == float(dose[dose.beta == 1.0].label_gain.median())
    assert m["concept_share"]["2"] >= m["concept_share"]["0.1"]              # the star item comes in
    assert s["ablation"] == {"n_units": 0} and s["steering_card"]["after"][0] == "movie 7"


def test_alignment_known_answers():
    """A direction inside the item table's main plane keeps all its norm there and one orthogonal to it none;
    a direction equal to a label's item direction has cosine 1 with it; random directions sit between."""
    g = torch.Generator().manual_seed(0)
    E = torch.zeros(201, 8)
    E[1:, :2] = torch.randn(200, 2, generator=g) * torch.tensor([3.0, 2.0])   # items vary in dims 0-1 only
    E[1:, 2:] = 1e-3 * torch.randn(200, 6, generator=g)
    labels = np.zeros((201, 2), bool)
    labels[1:51, 0] = labels[101:151, 1] = True
    Eb = E[1:]
    oracle0 = Eb[:50].mean(0) - Eb.mean(0)
    U = torch.stack([oracle0, torch.eye(8)[5]])
    w = ST.alignment(E, U, labels, np.array([0.3, 0.0]), q=2)
    assert w["in_span"] == pytest.approx(0.5 * (1.0 + 0.0), abs=1e-3)     # median of {~1, ~0}
    one = ST.alignment(E, U[:1], labels[:, :1], q=2)
    assert one["in_span"] == pytest.approx(1.0, abs=1e-3) and one["label_cos"] == pytest.approx(1.0, abs=1e-9)
    assert 2 / 8 - 0.1 < ST.random_in_span(8, E, q=2) < 2 / 8 + 0.1   # q of d dimensions by chance


def test_steerability_matched_kl_interpolates_the_null():
    """Random directions whose KL and gain grow with the dose: a unit at a random direction's KL of dose 1 is
    judged against that direction's gain at dose 1; below the smallest dose the dose scales as sqrt(KL)."""
    import pandas as pd

    from recsae_utils import interventions as I

    betas = (0.5, 1.0, 2.0)
    rand_kl = np.array([[0.1, 0.1], [0.4, 0.4], [1.6, 1.6]])          # (B, R): KL = 0.4 beta^2
    gain = np.array([[0.05, 0.05], [0.1, 0.1], [0.2, 0.2]])[:, :, None].repeat(2, 2)  # (B, R, L): 0.1 beta
    dose = pd.DataFrame({"unit": [7, 8], "beta": [1.0, 1.0], "label_gain": [0.11, 0.09], "kl": [0.4, 0.025]})
    out = I.steerability_matched_kl(dose, gain, rand_kl, [7, 8], betas)
    assert out["random_q_kl"].tolist() == pytest.approx([0.1, 0.025])   # KL 0.025 = 0.4 * 0.25^2: dose 0.25
    assert out["steerable_kl"].tolist() == [True, True] and not out["beyond"].any()


def test_random_kls_equal_a_direct_softmax_kl():
    from recsae_utils.metrics import mask_known

    ctx = planted_ctx()
    rows = np.arange(40)
    got = I.random_kls(ctx, rows, n_random=3, betas=(0.5, 1.0), seed=4)
    U = I.random_units(ctx.E.shape[1], 3, 4)
    S0 = mask_known(ctx.h[rows] @ ctx.E.T, ctx.users[rows], *ctx.mask)
    for i, b in enumerate((0.5, 1.0)):
        for r in range(3):
            S1 = S0 + b * ctx.h_norm * (ctx.E @ U[r])
            p, q = torch.log_softmax(S0.double(), 1), torch.log_softmax(S1.double(), 1)
            ok = torch.isfinite(p)
            direct = (p.exp() * torch.where(ok, p - q, torch.zeros_like(p))).sum(1).mean()
            assert got[i, r] == pytest.approx(float(direct), rel=1e-3)
    assert (got[1] > got[0]).all()                                     # KL grows with the dose
