"""Shared fixtures: a tiny synthetic MovieLens-1M written in the original file format, and what the
pipeline builds from it. Everything lives in pytest's temp folders; nothing touches runs/ or reports/."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsae_utils import data, synthetic


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A RECSAE_DATA_DIR-style folder holding ml-1m/ (tiny, synthetic)."""
    root = tmp_path_factory.mktemp("data")
    synthetic.write_tiny_movielens(root / "ml-1m")
    return root


@pytest.fixture(scope="session")
def tiny_ds(tiny_root):
    return data.build_ml1m(tiny_root / "ml-1m")


@pytest.fixture(scope="session")
def tiny_inst(tiny_ds):
    return data.build_instances(tiny_ds)


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for tiny problems: a second thread only adds scheduling waits (the CI box has
    2 busy cores), and distributed workers compare sums that must not depend on the thread count. A test
    module turns it on for all its tests with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_planted_atoms(n: int = 20_000, d: int = 16, n_atoms: int = 64, active: int = 3, noise: float = 0.0,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, D): each row of x is the sum of `active` atoms of a planted unit-norm dictionary D (n_atoms, d) with
    coefficients 0.5-1.5, plus Gaussian noise of scale `noise` (drawn last, so noise = 0 leaves x as it was)."""
    g = torch.Generator().manual_seed(seed)
    D = F.normalize(torch.randn(n_atoms, d, generator=g), dim=1)
    idx = torch.rand(n, n_atoms, generator=g).topk(active, dim=1).indices
    coef = torch.zeros(n, n_atoms).scatter_(1, idx, 0.5 + torch.rand(n, active, generator=g))
    x = coef @ D
    return (x + noise * torch.randn(n, d, generator=g) if noise else x), D


@pytest.fixture(scope="session")
def planted_atoms():
    """`make_planted_atoms`: SAE tests recover its dictionary."""
    return make_planted_atoms
