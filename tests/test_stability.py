"""recsae_utils.stability: known answers for decoder matching, activation-correlation matching, top-item
overlap and label agreement."""
from __future__ import annotations

import numpy as np
import pytest

from recsae_utils import stability as ST


def test_permuted_copy_matches_every_latent_at_cosine_one():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(256, 64))
    perm = rng.permutation(256)
    m = ST.match_decoders(W, 3.0 * W[perm])  # row norms do not matter
    assert m.shares() == {"matched_0.9": 1.0, "matched_0.7": 1.0}
    assert np.allclose(m.sim, 1.0)
    np.testing.assert_array_equal(perm[m.b], m.a)  # latent perm[j] of A is latent j of B


def test_random_dictionaries_almost_never_match():
    rng = np.random.default_rng(1)
    m = ST.match_decoders(rng.normal(size=(512, 64)), rng.normal(size=(512, 64)))
    s = m.shares()
    assert s["matched_0.9"] == 0.0 and s["matched_0.7"] < 0.01
    with pytest.raises(ValueError, match="different spaces"):
        ST.match_decoders(np.ones((2, 3)), np.ones((2, 4)))


def test_assignment_is_one_to_one_not_greedy():
    # greedy nearest neighbour would give both rows column 0; the optimum pairs (0, 1) and (1, 0)
    m = ST.assign(np.array([[0.95, 0.94], [0.9, 0.1]]))
    assert m.b.tolist() == [1, 0] and m.sim.tolist() == [0.94, 0.9]


def test_activation_correlation_recovers_a_planted_permutation():
    rng = np.random.default_rng(2)
    n, m, k = 3000, 40, 4
    idx = np.argsort(rng.random((n, m)), axis=1)[:, :k].astype(np.int32)
    val = rng.uniform(0.5, 2.0, size=(n, k)).astype(np.float32)
    val[:, -1] = 0.0                                  # padding slots (value 0) fire nowhere
    perm = rng.permutation(m)                         # latent j of A is latent perm[j] of B
    noisy = val * rng.uniform(0.9, 1.1, size=val.shape).astype(np.float32) * 2.0  # another scale, some noise
    match = ST.match_activations((idx, val), m, (perm[idx].astype(np.int32), noisy), m, chunk=700)
    np.testing.assert_array_equal(match.b, perm[match.a])
    assert match.sim.min() > 0.9
    C = ST.activation_correlation((idx, val), m, (idx, val), m, chunk=1000)
    dense = np.zeros((n, m))
    np.add.at(dense, (np.repeat(np.arange(n), k), idx.ravel()), val.ravel())
    np.testing.assert_allclose(C, np.corrcoef(dense.T), atol=1e-9)


def test_dead_latent_correlates_zero():
    idx = np.array([[0], [0], [1]], np.int32)
    val = np.array([[1.0], [2.0], [1.0]], np.float32)
    C = ST.activation_correlation((idx, val), 3, (idx, val), 3)
    assert C[2].tolist() == [0.0, 0.0, 0.0] and C[0, 0] == pytest.approx(1.0)


def test_top_items_labels_and_summary_known_answers():
    m = ST.Match(np.array([0, 1, 2]), np.array([1, 0, 2]), np.array([0.95, 0.92, 0.5]), 4)
    top_a = np.array([[1, 2, 3, -1], [4, 5, 6, 7], [1, 1, 1, 1], [0, 0, 0, 0]])
    top_b = np.array([[4, 5, -1, -1], [1, 2, 9, -1], [8, 8, 8, 8], [0, 0, 0, 0]])
    np.testing.assert_allclose(ST.top_item_jaccard(top_a, top_b, m), [2 / 4, 2 / 4, 0.0])
    assert ST.concept_part("Sci-Fi (Wonder Boys, 2010), 2000s  releases") == "sci-fi, 2000s releases"
    la = ["Drama (A, B), 1990s", "Horror (C)", "Comedy", "x"]
    lb = ["horror (D, E)", "Drama (F), 1980s", "Comedy, 1980s", "x"]
    assert ST.label_agreement(la, lb, m).tolist() == [False, True, False]
    s = ST.summary(m, top_a, top_b, la, lb)
    assert s["matched_0.9"] == 0.5 and s["matched_0.7"] == 0.5 and s["n_latents"] == 4
    assert s["top_item_jaccard"] == 0.5 and s["label_agreement"] == 0.5
