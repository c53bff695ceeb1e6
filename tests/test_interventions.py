"""Interventions: known answers on planted item tables and codes (zero edit, kept error term, steering a
planted latent to rank 1, ablation of an inactive latent, the calibration of steerability)."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recsae_utils import interventions as I
from recsae_utils import sae as S


def planted_ctx(n=300, n_items=200, d=16, m=32, k=4, seed=0, star=7, star_latent=5) -> I.SteeringContext:
    """Random item table (row 0 = padding), a unit-norm dictionary whose latent `star_latent` points at item
    `star` (made the longest item vector), codes with k active latents, h = decoded code + an error term,
    and a known-item CSR of 3 items + the target per user (never `star`)."""
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(n_items, d, generator=g)
    E[0] = 0
    E[star] *= 1.2 * E.norm(dim=1).max() / E[star].norm()
    W = F.normalize(torch.randn(m, d, generator=g), dim=1)
    W[star_latent] = F.normalize(E[star], dim=0)
    zi = torch.rand(n, m, generator=g).topk(k, dim=1).indices
    zv = 0.5 + torch.rand(n, k, generator=g)
    zv[:, -1] = 0.0                                   # a TopK slot holding 0 is inactive
    h = (zv[:, :, None] * W[zi]).sum(1) + 0.1 * torch.randn(n, d, generator=g)
    rng = np.random.default_rng(seed)
    users = np.arange(1, n + 1)
    targets = rng.integers(1, n_items, n)
    targets[targets == star] = star + 1
    known = [np.unique(np.r_[rng.integers(1, n_items, 3), t]) for t in targets]
    known = [kn[kn != star] for kn in known]
    indptr = np.r_[0, 0, np.cumsum([len(kn) for kn in known])]
    items = pd.DataFrame({"item_id": np.arange(1, n_items), "title": [f"movie {i}" for i in range(1, n_items)],
                          "genres": [["Comedy"] if i % 2 else ["Drama", "War"] for i in range(1, n_items)]})
    return I.SteeringContext(E, W, h, zi, zv, users, targets, (indptr, np.concatenate(known)),
                             float(h.norm(dim=1).median()), items)


def dense_code(ctx, rows=slice(None)) -> torch.Tensor:
    zi, zv = ctx.z_idx[rows], ctx.z_val[rows]
    return torch.zeros(len(zi), len(ctx.W_dec)).scatter_(1, zi, zv)


def test_zero_edit_leaves_ranking_identical():
    ctx = planted_ctx()
    r0 = I.rank_all(ctx.E, ctx.h, ctx.users, ctx.mask, ctx.targets)
    active = {int(j): 1.0 for j in ctx.z_idx[:, 0].unique()}
    for e in (I.Edit(), I.Edit(scale=active), I.Edit(steer={3: 0.0})):
        h1 = I.edit_h(ctx.h, ctx.z_idx, ctx.z_val, ctx.W_dec, e, ctx.h_norm)
        assert torch.equal(h1, ctx.h)
        r1 = I.rank_all(ctx.E, h1, ctx.users, ctx.mask, ctx.targets)
        assert torch.equal(r1.top, r0.top) and torch.equal(r1.ranks, r0.ranks)
    rec = I.recommend(ctx, user=int(ctx.users[4]))
    assert (rec.item_before == rec.item_after).all() and (rec.change == 0).all()
    assert rec.title_after.str.startswith("movie").all() and rec.genres_after.isin(["Comedy", "Drama|War"]).all()


def test_masking_and_target_rank_match_a_hand_count():
    ctx = planted_ctx()
    r = I.rank_all(ctx.E, ctx.h, ctx.users, ctx.mask, ctx.targets)
    i = 11
    u = ctx.users[i]
    known = ctx.mask[1][ctx.mask[0][u]:ctx.mask[0][u + 1]]
    s = (ctx.h[i] @ ctx.E.T).numpy()
    free = np.setdiff1d(np.arange(1, len(s)), known)
    assert int(r.ranks[i]) == 1 + (s[free] >= s[ctx.targets[i]]).sum()
    assert set(r.top[i].tolist()) == set(free[np.argsort(-s[free])[:10]].tolist())


def test_edit_keeps_the_sae_error_term_exactly():
    ctx = planted_ctx()
    j_act = int(ctx.z_idx[0, 0])
    inactive = int(np.setdiff1d(np.arange(32), ctx.z_idx[0].numpy())[0])
    e = I.Edit(set_to={inactive: 2.5}, scale={j_act: 3.0}, ablate=[int(ctx.z_idx[0, 1])])
    h1 = I.edit_h(ctx.h, ctx.z_idx, ctx.z_val, ctx.W_dec, e)
    z = dense_code(ctx)
    z1 = z.clone()
    z1[:, inactive] = 2.5
    z1[:, j_act] *= 3.0
    z1[:, int(ctx.z_idx[0, 1])] = 0.0
    sae = S.TopKSAE(S.SAEConfig(d_in=16, n_latents=32, k=4))
    with torch.no_grad():
        sae.W_dec.copy_(ctx.W_dec)
        sae.b_dec.copy_(torch.randn(16))
    full = torch.arange(32).expand(len(z), -1)
    x_hat, x_hat1 = sae.decode(z, full).detach(), sae.decode(z1, full).detach()
    torch.testing.assert_close(h1 - ctx.h, x_hat1 - x_hat, atol=1e-5, rtol=0)
    torch.testing.assert_close(h1 - x_hat1, ctx.h - x_hat, atol=1e-5, rtol=0)   # the error term is kept
    assert not torch.allclose(h1, ctx.h)
    with pytest.raises(ValueError, match="edited twice"):
        I.edit_h(ctx.h, ctx.z_idx, ctx.z_val, ctx.W_dec, I.Edit(scale={1: 2.0}, ablate=[1]))
    with pytest.raises(ValueError, match="outside"):
        I.edit_h(ctx.h, ctx.z_idx, ctx.z_val, ctx.W_dec, I.Edit(steer={99: 1.0}))


def test_steering_a_planted_latent_moves_its_item_to_rank_one():
    ctx = planted_ctx()
    r0 = I.rank_all(ctx.E, ctx.h, ctx.users, ctx.mask)
    away = ctx.users[~(r0.top == 7).any(1).numpy()]         # users whose top-10 lacks item 7
    assert len(away) >= 100
    for user in away[:5]:
        after = I.recommend(ctx, int(user), steer={5: 2.0}, k=10)
        assert after.item_after.iloc[0] == 7 and after.change.iloc[0] > 0
    rows = np.arange(50)
    labels = I.item_sets(len(ctx.E), [[7], [7]])
    dose = I.dose_response(ctx, rows, ctx.W_dec, [5, 6], np.ones((50, 2), bool), labels, labels, betas=(0.25, 2.0))
    at2 = dose[dose.beta == 2.0].set_index("unit")
    assert at2.loc[5, "label_after"] == pytest.approx(0.1)                  # item 7 in every top-10
    assert at2.loc[6, "label_after"] < 0.1 and at2.loc[5, "kl"] > 0
    assert (dose.n == 50).all() and (dose.label_before < 0.1).all()


def test_ablating_an_inactive_latent_changes_nothing():
    ctx = planted_ctx()
    j = 9
    off = np.asarray(I.inactive_rows(ctx.z_idx, ctx.z_val, [j]))[:, 0]
    zero_slot = int(ctx.z_idx[0, -1])                       # in the top-k but with value 0: inactive too
    assert 0 < off.sum() < len(off)
    h1 = I.edit_h(ctx.h[off], ctx.z_idx[off], ctx.z_val[off], ctx.W_dec, I.Edit(ablate=[j]))
    assert torch.equal(h1, ctx.h[off])
    h0 = I.edit_h(ctx.h[:1], ctx.z_idx[:1], ctx.z_val[:1], ctx.W_dec, I.Edit(ablate=[zero_slot]))
    assert torch.equal(h0, ctx.h[:1])
    # an active one does change h by -z_j W_dec[j]
    a = int(ctx.z_idx[0, 0])
    h2 = I.edit_h(ctx.h[:1], ctx.z_idx[:1], ctx.z_val[:1], ctx.W_dec, I.Edit(ablate=[a]))
    torch.testing.assert_close(h2 - ctx.h[:1], -ctx.z_val[0, 0] * ctx.W_dec[a][None], atol=1e-6, rtol=0)


def test_ablation_counts_items_leaving_the_top10():
    ctx = planted_ctx()
    # make latent 5 (which points at item 7) strongly active, in slot 0, on 40 instances whose top-10
    # lacks item 7 and whose code lacks latent 5: ablating it must restore their ranking exactly
    r0 = I.rank_all(ctx.E, ctx.h, ctx.users, ctx.mask)
    ok = ~(r0.top == 7).any(1) & ~(ctx.z_idx == 5).any(1)
    ctx = I.SteeringContext(**{**ctx.__dict__, **{f: getattr(ctx, f)[ok.numpy()] for f in
                                                  ("h", "z_idx", "z_val", "users", "targets")}})
    ctx.z_idx[:40, 0], ctx.z_val[:40, 0] = 5, 8.0
    ctx.h[:40] += 8.0 * ctx.W_dec[5]
    labels = I.item_sets(len(ctx.E), [[7]])
    res = I.ablation(ctx, [5], labels, labels, max_rows=30, seed=0).set_index("unit")
    assert res.loc[5, "n"] == 30
    assert res.loc[5, "concept_in"] == 1.0                 # item 7 was in every top-10 ...
    assert res.loc[5, "concept_left"] == 1.0               # ... and zeroing latent 5 removed it
    assert res.loc[5, "concept_left_control"] == 0.0       # zeroing the next latent did not


def test_steerability_is_calibrated_and_finds_a_planted_direction():
    ctx = planted_ctx(n=200, n_items=300, d=16, seed=1)
    rng = np.random.default_rng(0)
    n_units = 120
    feats = rng.random((300, 12)) < 0.2
    lab_feats = [rng.choice(12, 2, replace=False) for _ in range(n_units)]
    labels = I.label_items(feats, lab_feats)
    D = F.normalize(torch.randn(n_units, 16, generator=torch.Generator().manual_seed(99)), dim=1)
    # unit 0 points at the mean embedding of its label items: a steerable direction by construction
    D[0] = F.normalize(ctx.E[torch.from_numpy(labels[:, 0])].mean(0) - ctx.E[1:].mean(0), dim=0)
    rows = np.arange(200)
    inactive = np.ones((200, n_units), bool)
    dose = I.dose_response(ctx, rows, D, np.arange(n_units), inactive, labels, betas=(1.0,), kl=False)
    rand = I.random_gains(ctx, rows, inactive, labels, n_random=100, seed=3)
    st = I.steerability(dose, rand, np.arange(n_units))
    assert bool(st.steerable.iloc[0]) and st.gain.iloc[0] > 0.1
    share = st.steerable.iloc[1:].mean()                   # random directions pass about 5% by construction
    assert 0.0 < share <= 0.12, share


def test_debias_curve_and_context_from_an_sae():
    ctx = planted_ctx()
    pct = np.linspace(0, 100, len(ctx.E))                  # item id = popularity order
    ctx.z_idx[:, 0], ctx.z_val[:, 0] = 5, 4.0              # latent 5 points at item 7 (a niche item here)
    ctx.h += 4.0 * ctx.W_dec[5]
    curve = I.debias_curve(ctx, [5], pct, factors=(1.0, 0.0))
    assert curve.loc[0, "ndcg_cost"] == 0 and curve.loc[0, "replaced"] == 0
    assert curve.loc[1, "replaced"] > 0 and curve.loc[1, "popularity_pct"] != curve.loc[0, "popularity_pct"]
    n_items = ctx.E.shape[0]
    pd.testing.assert_frame_equal(I.debias_curve(ctx, [5], pct, factors=(1.0, 0.0), block=7 * n_items), curve)
    half = I.debias_curve(ctx, [5], pct, factors=(1.0, 0.0), max_rows=len(ctx.h) // 2, seed=1)
    rows = np.sort(np.random.default_rng(1).choice(len(ctx.h), len(ctx.h) // 2, replace=False))
    sub = dataclasses.replace(ctx, h=ctx.h[rows], z_idx=ctx.z_idx[rows], z_val=ctx.z_val[rows],
                              users=ctx.users[rows], targets=ctx.targets[rows])
    pd.testing.assert_frame_equal(half, I.debias_curve(sub, [5], pct, factors=(1.0, 0.0), block=3 * n_items))
    assert not half.equals(curve)
    sae = S.TopKSAE(S.SAEConfig(d_in=16, n_latents=32, k=4))
    sc = I.steering_context(ctx.E, sae, ctx.h, ctx.users, ctx.targets, ctx.mask)
    zi, zv = S.encode_sparse(sae, ctx.h)
    assert np.array_equal(sc.z_idx.numpy(), zi) and sc.h_norm == pytest.approx(float(ctx.h.norm(dim=1).median()))
    with pytest.raises(ValueError, match="user 99999"):
        I.recommend(sc, 99999)
    with pytest.raises(ValueError, match="differ in length"):
        I.steering_context(ctx.E, sae, ctx.h, ctx.users[:3], ctx.targets, ctx.mask)
    # a stage's inputs in one call: the same context as the arrays passed by hand
    inst = SimpleNamespace(user=ctx.users, item=ctx.targets)
    si = SimpleNamespace(model=SimpleNamespace(item_table=lambda: ctx.E), h={"test": ctx.h},
                         inst={"test": inst}, mask=ctx.mask, ds=SimpleNamespace(items=None))
    by_split = I.split_context(si, sae, "test")
    assert torch.equal(by_split.z_idx, sc.z_idx) and torch.equal(by_split.E, sc.E) and by_split.h_norm == sc.h_norm
    pd.testing.assert_frame_equal(I.recommend(by_split, int(ctx.users[0]), steer={5: 1.0}),
                                  I.recommend(sc, int(ctx.users[0]), steer={5: 1.0}))
    assert torch.equal(I.signed_basis(3)[4], torch.tensor([0.0, -1.0, 0.0]))


def test_mismatched_shapes_give_a_clear_error():
    ctx = planted_ctx()
    labels = I.item_sets(len(ctx.E), [[7], [8]])
    with pytest.raises(ValueError, match="inactive has shape"):
        I.dose_response(ctx, np.arange(10), ctx.W_dec, [5, 6], np.ones((10, 3), bool), labels)
    with pytest.raises(ValueError, match="item table has shape"):
        I.random_gains(ctx, np.arange(10), np.ones((10, 2), bool), labels[:50])


def test_dose_response_kl_equals_the_catalog_kl_of_the_steered_scores():
    """The closed form (lse(S0 + b p) - lse(S0) - b <softmax(S0), p>) equals metrics.catalog_kl on the
    masked scores, for every unit and dose, on the instances counted."""
    from recsae_utils.metrics import catalog_kl

    ctx = planted_ctx(n=60, n_items=120, d=16, seed=2)
    rng = np.random.default_rng(1)
    units, rows = np.arange(5), np.arange(60)
    labels = rng.random((120, 5)) < 0.3
    inactive = rng.random((60, 5)) < 0.7
    D = F.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(4)), dim=1)
    dose = I.dose_response(ctx, rows, D, units, inactive, labels, betas=(0.5, 2.0))
    S0 = I.rank_all(ctx.E, ctx.h, ctx.users, ctx.mask, ctx.targets).scores
    for r in dose.itertuples():
        v = torch.from_numpy(inactive[:, r.unit])
        shift = r.beta * ctx.h_norm * (ctx.E @ D[r.unit])
        assert r.kl == pytest.approx(catalog_kl(S0[v], (S0 + shift)[v]), rel=1e-4, abs=1e-6)


def test_steered_topk_copy_and_logsumexp_keep_the_numbers():
    """The top-k on a row-contiguous copy of the steered scores and `logsumexp_` (reusing the top-1 value,
    in place) give bit for bit what the top-k and torch.logsumexp of the broadcast scores give, in the
    strided layout that a transposed slice of directions produces."""
    from recsae_utils.interventions import logsumexp_, steered_topk
    g = torch.Generator().manual_seed(0)
    S0 = torch.randn(7, 50, generator=g)
    S0[:, 0] = float("-inf")
    S0[torch.arange(7), torch.randint(1, 50, (7,), generator=g)] = float("-inf")
    P = torch.randn(50, 5, generator=g)
    b = torch.tensor([0.5, 1.0, 2.0])
    shift = b[:, None, None] * P[:, 1:4].T                                # (3, 3, 50), unit dimension fastest
    s_ref = S0 + shift[..., None, :]
    assert not s_ref.is_contiguous()
    val_ref, top_ref = s_ref.topk(4, dim=-1)
    lse_ref = torch.logsumexp(s_ref, dim=-1)
    s, (val, top) = steered_topk(S0, shift, 4, values=True, buf=torch.empty(s_ref.numel() + 3))
    assert s.stride() == s_ref.stride() and torch.equal(val, val_ref) and torch.equal(top, top_ref)
    assert torch.equal(logsumexp_(s, val[..., :1]), lse_ref)


def test_every_public_intervention_checks_its_arguments():
    """A NaN or infinite dose returned a ranking, latent 1.5 silently became latent 1, k=-3 failed deep in
    torch, and a user id of 10**19 wrapped around (10**30: a bare OverflowError). Each is now a clear error."""
    ctx = planted_ctx()
    user = int(ctx.users[4])
    ok = I.recommend(ctx, user=user, steer={5: 1.0}, k=3)
    assert len(ok) == 3 and I.recommend(ctx, user=np.int64(user), steer={5.0: 1.0}, k=3).equals(ok)  # 5.0 is latent 5
    bad_calls = {
        r"steer dose \(beta\): nan is not a finite": dict(steer={5: float("nan")}),
        r"steer dose \(beta\): inf is not a finite": dict(steer={5: float("inf")}),
        r"steer latent: 1.5 is not an integer id": dict(steer={1.5: 1.0}),
        r"steer latent: id 32 is outside 0..31": dict(steer={32: 1.0}),
        r"ablate latent: id -1 is outside": dict(ablate=[-1]),
        r"scale factor: 'x' is not a number": dict(scale={3: "x"}),
        r"set_to value: nan": dict(set_to={3: float("nan")}),
        r"k must be an integer 1..199, got -3": dict(k=-3),
        r"k must be an integer 1..199, got 2.5": dict(k=2.5),
    }
    for message, kw in bad_calls.items():
        with pytest.raises(ValueError, match=message):
            I.recommend(ctx, user=user, **kw)
    for u in (10 ** 19, 10 ** 30, -(10 ** 30), 0):
        with pytest.raises(ValueError, match=rf"user {u} has no instance in this steering context \(its user ids lie in 1..300\)"):
            I.recommend(ctx, user=u)
    with pytest.raises(ValueError, match="user must be an integer user id, got 4.5"):
        I.recommend(ctx, user=4.5)
    rows, units = np.arange(20), [5, 6]
    inactive, labels = np.ones((20, 2), bool), np.zeros((200, 2), bool)
    with pytest.raises(ValueError, match=r"beta: nan is not a finite"):
        I.dose_response(ctx, rows, ctx.W_dec, units, inactive, labels, betas=(0.5, float("nan")))
    with pytest.raises(ValueError, match=r"unit: 1.5 is not an integer id"):
        I.dose_response(ctx, rows, ctx.W_dec, [5, 1.5], inactive, labels)
    with pytest.raises(ValueError, match=r"row: id 300 is outside 0..299"):
        I.random_gains(ctx, np.arange(299, 301), inactive[:2], labels)
    with pytest.raises(ValueError, match=r"factor: inf is not a finite"):
        I.debias_curve(ctx, [5], np.zeros(200), factors=(1.0, float("inf")))
    with pytest.raises(ValueError, match=r"latent: id 99 is outside 0..31"):
        I.steer_each(ctx, 0, [3, 99])
    with pytest.raises(ValueError, match=r"beta: nan"):
        I.browser_examples(ctx, [3], beta=float("nan"))
    with pytest.raises(ValueError, match=r"unit: id 40 is outside"):
        I.ablation(ctx, [40], labels, labels)
    with pytest.raises(ValueError, match=r"item id: id -1 is outside 0..199"):         # -1 used to mark the last item
        I.item_sets(200, [[1, 2], [-1]])
    with pytest.raises(ValueError, match=r"beta: inf"):
        I.random_tops(ctx, rows, n_random=2, beta=float("inf"))
    with pytest.raises(ValueError, match=r"k must be an integer 1..199, got 0"):
        I.rank_all(ctx.E, ctx.h[:2], ctx.users[:2], ctx.mask, k=0)


def test_debias_split_by_the_sign_of_popularity_correlation():
    """The de-biasing curve of the flagged latents together and per sign of their popularity correlation: each
    group's rows are `debias_curve` of exactly its latents; the report says which way suppressing moves."""
    from recsae_utils import steering, tables

    ctx = planted_ctx()
    pct = np.linspace(0, 100, len(ctx.E))
    rho = np.zeros(len(ctx.W_dec))
    rho[[5, 9, 11]] = [-0.4, 0.3, 0.2]                    # 5 anti-popularity, 9 and 11 pro-popularity
    flag = np.array([5, 9, 11])
    deb = steering.debias_by_sign(ctx, flag, rho, pct, seed=0)
    assert deb["latents"].unique().tolist() == ["all", "pro-popularity", "anti-popularity"]
    for name, ids in (("all", [5, 9, 11]), ("pro-popularity", [9, 11]), ("anti-popularity", [5])):
        got = deb[deb["latents"] == name]
        assert (got["n_latents"] == len(ids)).all()
        want = I.debias_curve(ctx, ids, pct, factors=steering.DEBIAS_FACTORS, max_rows=steering.DEBIAS_ROWS, seed=0)
        pd.testing.assert_frame_equal(got.drop(columns=["latents", "n_latents"]).reset_index(drop=True), want)
    only_pro = steering.debias_by_sign(ctx, np.array([9]), rho, pct, seed=0)
    assert only_pro["latents"].unique().tolist() == ["all", "pro-popularity"]   # no empty group
    rows = [{"factor": f, "popularity_pct": p, "ndcg@10": 0.1, "latents": g, "n_latents": n}
            for g, n, pts in (("all", 3, (60.0, 61.0)), ("anti-popularity", 1, (60.0, 63.0)))
            for f, p in zip((1.0, 0.0), pts)]
    text = tables.debias_text(rows, 3)
    assert "split by the sign of each latent's popularity correlation" in text
    assert "anti-popularity only (activation falls with popularity), 1: ×1 60.0 / 0.1000; ×0 63.0 / 0.1000 " \
           "(suppressing them **raises** popularity 3.0 points)" in text
    old = tables.debias_text([{"factor": 1.0, "popularity_pct": 90.0, "ndcg@10": 0.1}], 12)   # older summaries
    assert old.startswith("**De-biasing** (the 12 popularity-flagged") and "split" not in old


def test_example_row_is_the_instance_the_card_and_the_browser_share():
    """The steering card (`recommend` for a user: that user's last instance) and the browser's examples (a
    row) show the same instance: the first test user's last one."""
    ctx = planted_ctx()
    users = ctx.users.copy()
    users[:3] = users[0]                                  # the first user has three instances: rows 0, 1, 2
    ctx = dataclasses.replace(ctx, users=users)
    row = I.example_row(ctx)
    assert row == 2
    ex = I.browser_examples(ctx, [5], row=row)[5]
    rec = I.recommend(ctx, int(users[0]), steer={5: 1.0})
    assert ex["user"] == int(users[0]) and ex["after"] == rec.item_after.tolist()
    assert ex["before"] == rec.item_before.tolist()


def test_code_space_steering_moves_planted_item_to_rank_one():
    """`add` raises the planted latent in the code (h' = h + dz W_dec[j], the error term kept): its item goes
    to rank 1 for every user; with unit-norm rows it is exactly `steer` at the same dose."""
    ctx = planted_ctx()
    star, j = 7, 5
    r0 = I.rank_all(ctx.E, ctx.h, ctx.users, ctx.mask)
    assert (r0.top[:, 0] != star).any()
    dz = 3.0 * ctx.h_norm
    h1 = I.edit_h(ctx.h, ctx.z_idx, ctx.z_val, ctx.W_dec, I.Edit(add={j: dz}))
    assert torch.allclose(h1 - ctx.h, dz * ctx.W_dec[j].expand_as(ctx.h))
    assert (I.rank_all(ctx.E, h1, ctx.users, ctx.mask).top[:, 0] == star).all()
    h2 = I.edit_h(ctx.h, ctx.z_idx, ctx.z_val, ctx.W_dec, I.Edit(steer={j: 3.0}), ctx.h_norm)
    assert torch.allclose(h1, h2, atol=1e-5)
    # rows that are not unit-norm: `add` moves by dz * ||W_dec[j]||, `steer` by the dose alone
    W = ctx.W_dec.clone()
    W[j] *= 2.0
    h3 = I.edit_h(ctx.h, ctx.z_idx, ctx.z_val, W, I.Edit(add={j: 1.0}))
    assert torch.allclose((h3 - ctx.h).norm(dim=1), torch.full((len(ctx.h),), 2.0), atol=1e-5)


def test_recommend_steers_by_concept_name():
    """A concept's steering latents (yardstick.steering_latents: top-n by output score) raised in the code by
    `recommend(steer=name)`: the planted concept's items fill the top of the list; an unknown name is a clear
    error naming the concepts the context has."""
    from recsae_utils import yardstick as Y

    ctx = planted_ctx()
    n_items = len(ctx.E)
    star = 7
    items = np.zeros((n_items, 2), bool)
    items[[star, 8, 9], 0] = True                     # concept "planted": the star item and two more
    items[1::2, 1] = True
    items[0] = False
    cs = Y.ConceptSet(["genre:planted", "parity:odd"], items)
    conc = Y.steering_latents(ctx.E, ctx.W_dec, cs, n=3)
    assert 5 in conc["genre:planted"] and conc["genre:planted"][5] == max(conc["genre:planted"].values())
    ctx = dataclasses.replace(ctx, concepts=conc)
    user = int(ctx.users[0])
    rec = I.recommend(ctx, user, steer={"planted": 4.0})
    assert rec.item_after.iloc[0] == star and rec.change.iloc[0] > 0
    same = I.recommend(ctx, user, add=I.concept_edit(ctx, {"genre:planted": 4.0}))
    assert same.item_after.equals(rec.item_after)
    assert I.recommend(ctx, user, steer="planted").item_after.equals(I.recommend(ctx, user, steer={"planted": 1.0}).item_after)
    with pytest.raises(ValueError, match="unknown concept 'Horror'.*odd"):
        I.recommend(ctx, user, steer="Horror")
    with pytest.raises(ValueError, match="not a finite"):
        I.recommend(ctx, user, steer={"planted": float("nan")})
