"""The concept yardstick and the explanation deletion test on a planted model with known answers: one
concept's items share an embedding direction, one SAE latent's decoder row is that direction, and the
instances whose target is in the concept have that direction added to h."""
import numpy as np
import pandas as pd
import pytest
import torch

from recsae_utils import dictionary as DI
from recsae_utils import faithfulness as FA
from recsae_utils import yardstick as Y
from recsae_utils.specificity import Specificity

D, N_ITEMS, CONCEPT = 8, 61, np.arange(1, 31)   # items 1..30 carry 'genre:Planted'; 31..60 'genre:Other'
PLANTED = 5                                    # the SAE latent whose decoder row is the concept's direction


@pytest.fixture(scope="module")
def planted():
    g = torch.Generator().manual_seed(0)
    e0 = torch.zeros(D)
    e0[0] = 1.0
    E = 0.3 * torch.randn(N_ITEMS, D, generator=g)
    E[:, 0] = 0.05 * torch.randn(N_ITEMS, generator=g)
    E[CONCEPT, 0] += 1.5                                          # the concept's shared direction
    E[0] = 0
    W = torch.nn.functional.normalize(torch.randn(64, D, generator=g), dim=1)
    W[PLANTED] = e0
    n = 4000
    rng = np.random.default_rng(0)
    targets = rng.integers(1, N_ITEMS, n)
    pos = np.isin(targets, CONCEPT)
    h = torch.randn(n, D, generator=g) * 0.5
    h[torch.from_numpy(pos), 0] += 2.0
    # a TopK-like code: 4 random latents, plus the planted one on positives with a value that tracks h_0
    idx = rng.integers(0, 64, (n, 4))
    idx[idx == PLANTED] = PLANTED + 1
    val = rng.random((n, 4)).astype(np.float32) * 0.2
    idx[pos, 0] = PLANTED
    val[pos, 0] = 1.0 + h[torch.from_numpy(pos), 0].numpy().clip(0)
    genres = ["Planted" if i in CONCEPT else "Other" for i in range(1, N_ITEMS)]
    items = pd.DataFrame({"item_id": np.arange(1, N_ITEMS), "genres": genres})
    feats = DI.item_features(items, N_ITEMS)
    hist = np.where(pos[:, None], rng.choice(CONCEPT, (n, 5)), rng.integers(31, N_ITEMS, (n, 5)))
    mask = (np.arange(n + 1) * 0, np.zeros(0, np.int64))          # no known items: only padding is masked
    return dict(E=E, W=W, h=h, targets=targets, pos=pos, idx=idx, val=val, feats=feats, items=items, hist=hist,
                users=np.arange(n), mask=mask, e0=e0)


def test_concepts_and_positives(planted):
    cs = Y.concept_set(planted["feats"], N_ITEMS, min_items=10, max_share=0.6)
    assert cs.names == ["genre:Other", "genre:Planted"]
    assert cs.items[CONCEPT, 1].all() and not cs.items[0].any()
    P = Y.positives(cs, planted["targets"])
    assert (P[:, 1] == planted["pos"]).all()
    H = Y.positives(cs, planted["targets"], planted["hist"])      # every history is all-planted or all-other
    assert (H[:, 1] == planted["pos"]).all()
    # half of a history is enough; padding does not count
    hist = np.array([[1, 40, 0, 0], [40, 41, 1, 0]])
    assert Y.positives(cs, np.array([1, 1]), hist)[:, 1].tolist() == [True, False]


def test_directions_pick_the_planted_latent(planted):
    cs = Y.concept_set(planted["feats"], N_ITEMS, min_items=10, max_share=0.6)
    pos = Y.positives(cs, planted["targets"])
    Z = Y.firing_matrix(planted["idx"], planted["val"], 64)
    sae = Y.Units(planted["W"], Z)
    rnd = Y.Units(torch.nn.functional.normalize(torch.randn(64, D, generator=torch.Generator().manual_seed(1)), dim=1),
                  Z)
    dirs, picked = Y.concept_directions(planted["E"], planted["h"], pos, cs.items, sae, rnd,
                                        np.arange(len(pos)), seed=0)
    c = cs.names.index("genre:Planted")
    assert picked["sae_out"][c] == PLANTED
    assert picked["sae_in"][c] == PLANTED
    assert picked["raw"][c] == 0                                  # +e_0 among the signed dimensions
    for m in ("diffmean", "probe", "item_dir"):
        assert float(dirs[m][c] @ planted["e0"]) > 0.9, m         # each recovers the planted direction
    assert float(dirs["sae_multi3"][c] @ planted["e0"]) > 0.8     # the planted latent dominates the mix of three
    assert set(dirs) == set(Y.METHODS)


def test_matched_kl_bisection_reaches_the_target(planted):
    rows = Y.steering_rows(planted["E"], planted["h"][:300], planted["users"][:300], planted["targets"][:300],
                           planted["mask"])
    U = torch.stack([planted["e0"], torch.nn.functional.normalize(torch.ones(D), dim=0)])
    P = U @ planted["E"].T
    t, kl = Y.matched_strengths(rows, P, targets=(0.05, 0.3, 1.0))
    assert np.isfinite(t).all() and (t > 0).all()
    np.testing.assert_allclose(kl, np.array([[0.05, 0.3, 1.0]] * 2), rtol=0.02)
    recheck = Y.mean_kl(rows, P.repeat_interleave(3, 0), torch.as_tensor(t.ravel(), dtype=torch.float32))
    np.testing.assert_allclose(recheck.numpy(), kl.ravel(), rtol=1e-3)
    # steering toward the planted concept raises its share of the top 10
    cs = Y.concept_set(planted["feats"], N_ITEMS, min_items=10, max_share=0.6)
    out = Y.steer_outcome(rows, P[:1], t[:1, 1], cs.items, np.array([cs.names.index("genre:Planted")]))
    assert out["gain"].iloc[0] > 0.2


def test_ksparse_probing_finds_the_planted_unit(planted):
    cs = Y.concept_set(planted["feats"], N_ITEMS, min_items=10, max_share=0.6)
    pos = Y.positives(cs, planted["targets"])
    Z = Y.firing_matrix(planted["idx"], planted["val"], 64)
    tr, te = np.arange(3000), np.arange(3000, 4000)
    res = Y.ksparse_probing(Z[tr], pos[tr], Z[te], pos[te], np.arange(3000), ks=(1, 2), names=cs.names)
    r = res[(res["concept"] == "genre:Planted") & (res["k"] == 1)].iloc[0]
    assert r["units"] == [PLANTED] and r["auroc"] > 0.99
    # a dense input (raw h): dimension 0 carries the concept
    dense = Y.ksparse_probing(planted["h"][tr].numpy(), pos[tr], planted["h"][te].numpy(), pos[te], np.arange(3000),
                              ks=(1,), names=cs.names)
    assert dense.set_index("concept").loc["genre:Planted", "units"] == [0]


def test_io_agreement_planted_and_random(planted):
    E, W = planted["E"], planted["W"]
    top_in = [np.random.default_rng(j).choice(np.arange(1, N_ITEMS), 20, replace=False) for j in range(64)]
    top_in[PLANTED] = np.sort(np.argsort(-E[:, 0].numpy())[:20])   # the 20 items its direction favours most
    ov = Y.io_overlap(top_in, W, E, np.array([PLANTED, 7]), top=20)
    assert ov[0] == 1.0 and ov[1] < 0.7
    cs_feats = planted["feats"]
    planted_col = cs_feats.names.index("genre:Planted")
    other_col = cs_feats.names.index("genre:Other")
    labels = [[] for _ in range(64)]
    labels[PLANTED] = [planted_col]
    labels[7] = [other_col]
    agree = Y.label_agreement(labels, W, E, cs_feats, np.array([PLANTED, 7, 8]), top=1)
    assert agree.tolist()[0] is True and len(agree) == 2          # latent 8 has no label: not scored


def test_deletion_test_drops_the_planted_item(planted):
    # one instance whose recommendation is carried by the planted latent; a weak second latent as control
    E, W = planted["E"], planted["W"]
    h = (3.0 * planted["e0"] + 0.2 * W[9])[None]
    idx = np.array([[PLANTED, 9, 10, 11]])
    val = np.array([[3.0, 0.2, 0.15, 0.1]], dtype=np.float32)
    freq = np.full(64, 0.01)
    spec = Specificity(-np.log(freq), np.zeros(64, bool))
    genre_cols = [planted["feats"].names.index("genre:Planted")]
    label_genres = [np.array([0]) if j == PLANTED else np.zeros(0, np.int64) for j in range(64)]
    item_genres = np.asarray(planted["feats"].M[:, genre_cols].toarray() > 0)
    df, s = FA.deletion_test(E, W, np.zeros(D), h, idx, val, np.array([0]), planted["mask"], spec, label_genres,
                             item_genres)
    assert df["item_id"].iloc[0] in CONCEPT and df["rank_before"].iloc[0] <= 3
    assert df["drop_cited"].iloc[0] > 10                          # deleting the planted latent sinks its item
    assert df["drop_control"].iloc[0] < df["drop_cited"].iloc[0]
    assert s["semantic_agreement"] == 1.0


def test_matched_controls_pick_nearest_activation():
    zi = np.array([[1, 2, 3, 4, 5]])
    zv = np.array([[0.9, 0.5, 0.45, 0.1, 0.0]])
    cited = np.array([[2, -1, -1]])
    ctrl = FA.matched_controls(zi, zv, cited, np.zeros(10, bool))
    assert ctrl.tolist() == [[3, -1, -1]]                         # 0.45 is nearest to 0.5; 5 is inactive


def test_top_by_count_orders_by_count_then_id():
    import scipy.sparse as sp

    counts = sp.csr_matrix(np.array([[0, 5, 1, 5, 0], [0, 0, 0, 0, 0]]))
    top = Y.top_by_count(counts, top=2)
    assert top[0].tolist() == [1, 3] and top[1].tolist() == []


def test_yardstick_finding_and_table_read_the_summary():
    from recsae_utils.tables import yardstick_finding, yardstick_table

    g = {m: {"0.3": v} for m, v in (("diffmean", 0.24), ("probe", 0.2), ("sae_in", 0.06), ("sae_out", 0.18),
                                     ("sae_multi3", 0.12), ("raw", 0.08), ("random", 0.11), ("item_dir", 0.3))}
    y = {"n_concepts": 26, "median_gain": {"target": g},
         "ratios_at_kl0.3": {"sae_best_out_vs_diffmean": 0.75, "sae_in_vs_diffmean": 0.25},
         "probing_auroc": {"sae": {"1": 0.6}, "raw": {"1": 0.7}}, "agreement": {"sae": {"io_overlap_median": 0.05}},
         "faithfulness": {"median_drop_cited": 12.0, "median_drop_control": 3.0},
         "table": [{"name": "DiffMean <b>", "gain@KL0.3": 0.24, "auroc_k1": None}]}
    line = yardstick_finding(y)
    assert "DiffMean 0.240" in line and "best SAE output side 0.180 (0.75× DiffMean)" in line
    assert "the latent its label finds 0.060 (0.25×)" in line and "random direction 0.110" in line
    assert "SAE 0.600, raw 0.700" in line and "median rank drop 12.0 (3 matched others 3.0)" in line
    tab = yardstick_table(y)
    assert "<b>" not in tab and "| 0.240 |" in tab
    assert yardstick_finding(None) == "" and yardstick_finding({}) == ""


def test_concept_latents_name_the_detecting_and_the_steering_latent():
    """Per concept, the `sae_in` unit (found by what activates it) and the `sae_out` unit (found by what it
    promotes) with their gains at KL 0.3 from the steering table; the other KL target and the history variant
    never leak in; the card says how many concepts share one latent, and escapes the concept name."""
    import pandas as pd

    from recsae_utils import comparison as C

    concepts = ["genre:Horror", "decade:1990s|x"]
    rows = []
    for variant in ("target", "history"):
        for kl in (0.1, 0.3):
            for m in ("sae_in", "sae_out", "sae_multi3", "diffmean"):
                for ci, c in enumerate(concepts):
                    g = {"sae_in": 0.01, "sae_out": 0.2, "sae_multi3": 0.25, "diffmean": 0.22}[m] * (ci + 1)
                    rows.append({"variant": variant, "method": m, "concept": c, "kl_target": kl,
                                 "gain": g if (variant, kl) == ("target", 0.3) else -1.0})
    picked = {"sae_in": np.array([7, 3]), "sae_out": np.array([9, 3]), "sae_multi3": np.array([9, 3]),
              "diffmean": np.array([-1, -1])}
    res = C.StageResult(concepts, pd.DataFrame(rows), pd.DataFrame(), {}, pd.DataFrame(), {}, picked)
    cl = C.concept_latents(res)
    assert cl["concept"].tolist() == concepts
    assert cl["detecting_latent"].tolist() == [7, 3] and cl["steering_latent"].tolist() == [9, 3]
    assert cl["detecting_gain"].tolist() == pytest.approx([0.01, 0.02])
    assert cl["steering_gain"].tolist() == pytest.approx([0.2, 0.4])
    assert cl["steer_top3_gain"].tolist() == pytest.approx([0.25, 0.5])
    assert cl["same_latent"].tolist() == [False, True]
    text = C.concept_latents_md(cl)
    assert "the same latent for 1 of 2 concepts" in text
    assert "| genre:Horror | 7 | 0.010 | 9 | 0.200 | 0.250 | 0.220 |" in text
    assert "decade:1990s\\|x" in text                      # a concept name cannot break the table
