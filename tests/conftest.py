"""Shared fixtures: a tiny synthetic MovieLens-1M written in the original file format, and what the
pipeline builds from it. Everything lives in pytest's temp folders; nothing touches runs/ or reports/."""
from __future__ import annotations

import pytest

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
