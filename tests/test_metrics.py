"""Ranking and reconstruction metrics on hand-computed examples."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsae_utils import metrics


def test_hr_ndcg_hand_computed():
    # ranks 1, 2, 6: HR@5 = 2/3; NDCG@5 = (1 + 1/log2(3)) / 3
    m = metrics.ranking_metrics(np.array([1, 2, 6]), topk=(5, 10))
    assert m["HR@5"] == pytest.approx(2 / 3)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["HR@10"] == 1.0
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(7)) / 3)


def test_three_item_example_with_ties_and_masking():
    # items 1..3 (column 0 = padding); user 0 knows item 2 and item 3 (its target)
    scores = torch.tensor([[9.0, 0.5, 0.7, 0.5]])
    indptr, known = np.array([0, 2]), np.array([2, 3])
    masked = metrics.mask_known(scores, np.array([0]), indptr, known)
    assert torch.isinf(masked[0, [0, 2, 3]]).all() and masked[0, 1] == 0.5
    # target = item 3 with score 0.5; item 1 ties with it -> counted against the target -> rank 2
    rank = metrics.ranks_from_scores(masked, torch.tensor([0.5]))
    assert rank.tolist() == [2]
    # without masking, padding (9.0), item 2 (0.7), item 1 and the target's own duplicate column all
    # score >= 0.5: rank 1 + 4
    assert metrics.ranks_from_scores(scores, torch.tensor([0.5])).tolist() == [5]


def test_random_scorer_hits_k_over_n():
    g = torch.Generator().manual_seed(0)
    n_items, n = 201, 20000
    scores = torch.rand(n, n_items, generator=g)
    tgt = torch.randint(1, n_items, (n,), generator=g)
    t_scores = scores[torch.arange(n), tgt]
    scores[:, 0] = float("-inf")
    scores[torch.arange(n), tgt] = float("-inf")
    m = metrics.ranking_metrics(metrics.ranks_from_scores(scores, t_scores), topk=(10,))
    assert m["HR@10"] == pytest.approx(10 / 200, abs=0.006)


def test_reconstruction_edge_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 8, generator=g) * 3 + 1
    perfect = metrics.reconstruction_metrics(x, x)
    assert perfect["explained_variance"] == pytest.approx(1.0) and perfect["fvu"] == pytest.approx(0.0)
    assert perfect["cosine"] == pytest.approx(1.0) and perfect["l2_ratio"] == pytest.approx(1.0)
    mean = metrics.reconstruction_metrics(x, x.mean(0, keepdim=True).expand_as(x))
    assert mean["explained_variance"] == pytest.approx(0.0, abs=1e-12)
    half = metrics.reconstruction_metrics(x, 0.5 * x)
    assert half["l2_ratio"] == pytest.approx(0.5) and half["nmse"] == pytest.approx(0.25)


def test_firing_stats_and_fidelity_helpers():
    idx = torch.tensor([[0, 1], [0, 2], [0, 1]])
    st = metrics.firing_stats(idx, n_latents=4, dense_threshold=0.5)
    assert st["freq"].tolist() == [1.0, 2 / 3, 1 / 3, 0.0]
    assert st["dead_fraction"] == 0.25 and st["dense_fraction"] == 0.5
    # padded codes (BatchTopK/Matryoshka): a value-0 slot at index 0 is not a firing
    act = torch.tensor([[True, True], [False, True], [True, False]])
    st = metrics.firing_stats(idx, n_latents=4, dense_threshold=0.5, active=act)
    assert st["freq"].tolist() == [2 / 3, 1 / 3, 1 / 3, 0.0] and st["dense_fraction"] == 0.25
    a = torch.tensor([[5.0, 4, 3, 2, 1]])
    assert metrics.topk_overlap(a, a, k=2) == 1.0
    assert metrics.topk_overlap(a, -a, k=2) == 0.0
    assert metrics.catalog_kl(a, a) == pytest.approx(0.0)
    assert metrics.catalog_kl(a, a + 3.0) == pytest.approx(0.0, abs=1e-12)  # shift-invariant
    assert metrics.catalog_kl(a, torch.zeros_like(a)) > 0


def test_paired_ratio_ci_known_cases():
    from recsae_utils.metrics import ndcg_per_instance, paired_ratio_ci
    assert ndcg_per_instance([1, 3, 11], 10).tolist() == [1.0, 0.5, 0.0]
    a = np.tile([0.0, 1.0], 500)
    assert paired_ratio_ci(a, a) == (1.0, 1.0)                 # identical: no spread at all
    lo, hi = paired_ratio_ci(a, 0.9 * a)
    assert lo == pytest.approx(0.9) and hi == pytest.approx(0.9)  # a constant ratio survives every resample
    b = a.copy()
    b[1:100:2] = 0.0                                           # 50 of the 500 hits lost: ratio 0.9
    lo, hi = paired_ratio_ci(a, b)
    assert lo < 0.9 < hi and hi - lo < 0.06                    # paired: narrow, around the ratio
    with pytest.raises(ValueError, match="same non-zero length"):
        paired_ratio_ci(a, b[:10])


def test_variant_comparison_sentence():
    from recsae_utils.tables import variant_comparison

    def row(variant, ev, ret, dead):
        return {"config": {"variant": variant}, "health": {"explained_variance": ev, "dead_fraction": dead},
                "fidelity": {"retention": ret}}
    s = variant_comparison({"main": row("openai", 0.99, 0.98, 0.0), "reference": row("reference", 0.98, 0.99, 0.3)})
    assert "**openai** wins 2 of 3" in s and "dead fraction 0.0000 vs 0.3000 (openai)" in s
    s = variant_comparison({"main": row("openai", 0.97, 0.98, 0.4), "reference": row("reference", 0.98, 0.99, 0.3)})
    assert "**reference** wins 3 of 3" in s
    assert variant_comparison({"main": row("openai", 0.99, 0.98, 0.0)}) == ""


def test_matched_noise_has_the_same_fvu_and_is_seeded():
    from recsae_utils.fidelity import matched_noise
    g = torch.Generator().manual_seed(0)
    h = torch.randn(500, 16, generator=g)
    h_hat = h + 0.1 * torch.randn(500, 16, generator=g)
    noisy = matched_noise(h, h_hat, seed=3)
    fvu = lambda a: float(((h - a) ** 2).sum() / ((h - h.mean(0)) ** 2).sum())
    assert fvu(noisy) == pytest.approx(fvu(h_hat), rel=1e-6)
    assert torch.equal(noisy, matched_noise(h, h_hat, seed=3)) and not torch.equal(noisy, matched_noise(h, h_hat, seed=4))
    assert torch.equal(matched_noise(h, h, seed=3), h)                  # no error: no noise


def test_noise_calibration_spread_and_identity():
    """Zero error: every draw is h itself, so retention and overlap are exactly 1; the range brackets the mean."""
    from recsae_utils.data import Instances
    from recsae_utils.fidelity import noise_calibration
    g = torch.Generator().manual_seed(0)
    E = torch.randn(40, 8, generator=g)
    h = torch.randn(30, 8, generator=g)
    z = np.zeros(30, dtype=np.int64)
    inst = Instances(np.arange(30), np.arange(30) % 39 + 1, z, np.ones((30, 1), dtype=np.int64), z + 1)
    mask = (np.zeros(31, dtype=np.int64), np.zeros(0, dtype=np.int64))
    same = noise_calibration(E, h, h, inst, mask, draws=3)
    assert same["noise_matched_retention"] == 1.0 and same["noise_matched_top10_overlap"] == 1.0
    c = noise_calibration(E, h, h + 0.5 * torch.randn(30, 8, generator=g), inst, mask, draws=5)
    assert c["noise_matched_retention_low"] <= c["noise_matched_retention"] <= c["noise_matched_retention_high"]
    assert c["noise_matched_top10_overlap"] < 1.0 and c["noise_draws"] == 5


def test_sae_vs_raw_known_answer():
    """Pairs each size's SAE row with its raw-dimension row per (window, positives); random SAEs and rows
    without a size are ignored; the sentence counts views with a lead >= aim and larger shares."""
    from recsae_utils.tables import sae_vs_raw

    def r(sae, w, q, model, med, share):
        return {"sae": sae, "window": w, "strong_q": q, "model": model, "median_bal_acc_random": med,
                "share_bal_acc_ge_0.8_random": share}

    rows = [r("2048 latents, k=32", 20, 0.0, "SAE", 0.63, 0.10), r("2048 latents, k=32", 20, 0.0, "raw h_u dimensions", 0.68, 0.06),
            r("2048 latents, k=32", 20, 0.0, "random SAE", 0.99, 0.99),
            r("2048 latents, k=32", 1, 0.5, "SAE", 0.90, 0.50), r("2048 latents, k=32", 1, 0.5, "raw h_u dimensions", 0.70, 0.30),
            r("1024 latents, k=8", 1, 0.0, "SAE (1024 latents, k=8)", 0.80, 0.2),
            r("1024 latents, k=8", 1, 0.0, "raw h_u dimensions (k=1)", 0.70, 0.3),
            {"window": 1, "strong_q": 0.0, "model": "SAE", "median_bal_acc_random": 0.0}]
    out, text = sae_vs_raw(rows)
    got = {(o["sae"], o["window"], o["strong_q"]): round(o["delta"], 6) for o in out}
    assert got == {("2048 latents, k=32", 20, 0.0): -0.05, ("2048 latents, k=32", 1, 0.5): 0.2,
                   ("1024 latents, k=8", 1, 0.0): 0.1}
    assert "in 1 of 3 views" in text and "+0.200" in text and "upper half" in text and "larger in 2 of 3" in text
    assert sae_vs_raw([]) == ([], "")


def test_ranks_numpy_count_equals_torch_sum_and_weights_reused():
    """The CPU count of ranks_from_scores equals torch's sum of the comparison (ties and -inf included);
    paired_ratio_ci with pre-drawn bootstrap_weights equals drawing them inside."""
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 5, (30, 40), generator=g).float()
    s[:, :3] = float("-inf")
    t = s[:, 5].clone()
    assert torch.equal(metrics.ranks_from_scores(s, t), 1 + (s >= t[:, None]).sum(dim=1))
    a, b = np.random.default_rng(0).random(50), np.random.default_rng(1).random(50)
    w = metrics.bootstrap_weights(50)
    assert metrics.paired_ratio_ci(a, b, weights=w) == metrics.paired_ratio_ci(a, b)
    with pytest.raises(ValueError, match="weights have shape"):
        metrics.paired_ratio_ci(a, b, weights=w[:, :10])


def test_firing_stats_counts_across_row_blocks():
    """Past one row block (65,536 rows) the counts are summed block by block: the same as one bincount,
    also with an `active` mask."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 50, (70_001, 3), generator=g, dtype=torch.int32)
    active = torch.rand(70_001, 3, generator=g) > 0.3
    fs = metrics.firing_stats(idx, 60, active=active)
    want = torch.bincount(idx[active].long(), minlength=60).double() / 70_001
    assert np.array_equal(fs["freq"], want.numpy()) and fs["dead_fraction"] == 10 / 60
    assert np.array_equal(metrics.firing_stats(idx, 60)["freq"], (torch.bincount(idx.reshape(-1).long(), minlength=60).double() / 70_001).numpy())


def test_ranks_of_nonfinite_scores_are_an_error_never_rank_one():
    """A NaN compares False with everything: `scores >= target` counted nothing, so a diverged model ranked
    every target first (NDCG 1.0). -inf (a masked item) stays allowed."""
    scores = torch.tensor([[float("-inf"), 2.0, 1.0, 0.5], [float("-inf"), 0.1, 3.0, 0.2]])
    assert metrics.ranks_from_scores(scores, torch.tensor([1.5, 0.2])).tolist() == [2, 3]   # ties count against
    for bad_scores, bad_target in ((float("nan"), 1.0), (float("inf"), 1.0), (0.0, float("nan")), (0.0, float("-inf"))):
        s = scores.clone()
        s[0, 3] = bad_scores
        with pytest.raises(ValueError, match="cannot rank: .*NaN"):
            metrics.ranks_from_scores(s, torch.tensor([bad_target, 0.2]))
