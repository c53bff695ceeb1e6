"""The scaled synthetic MovieLens (benchmarks/bench_scale.py): the shape promised in its docstring, at a
small scale so the test is fast; read through the real data path."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from recsae_utils import data, sources, synthetic

SCALE = 0.25  # 1,510 users, 926 movies, ~190k ratings


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic.write_scaled_movielens(tmp_path_factory.mktemp("scaled") / "ml-1m", SCALE, seed=0)


@pytest.fixture(scope="module")
def ratings(folder):
    return sources.read_ratings(folder)


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_size_follows_scale(ratings):
    n_users = round(synthetic.ML1M_USERS * SCALE)
    assert ratings.user.nunique() == n_users
    assert ratings.movie.nunique() <= round(synthetic.ML1M_MOVIES * SCALE)
    # about ML-1M's ratings per user (165); catalogue smaller than ML-1M's caps heavy users, hence the margin
    assert 0.5 * synthetic.ML1M_RATINGS * SCALE < len(ratings) < 1.2 * synthetic.ML1M_RATINGS * SCALE


def test_popularity_is_heavy_tailed(ratings):
    c = np.sort(ratings.movie.value_counts().to_numpy())[::-1]
    top = c[:max(1, len(c) // 100)].sum() / c.sum()
    assert top > 0.03, top                     # top 1% of movies: > 3x their share under uniform popularity
    assert c[:len(c) // 10].sum() / c.sum() > 0.2      # top 10%: > 2x
    assert c[0] > 5 * np.median(c)


def test_user_activity_spread(ratings):
    a = ratings.user.value_counts().to_numpy()
    assert a.min() >= 20                       # as in ML-1M: every user has at least 20 ratings
    q10, q90 = np.quantile(a, [0.1, 0.9])
    assert q90 / q10 > 5                       # log-normal-like spread, not a constant
    assert 0.5 < (ratings.rating >= 4).mean() < 0.65


def test_next_movie_depends_on_the_previous_one(folder, ratings):
    """Consecutive movies of a user share a genre far more often than the same user's movies in random
    order: the sequential structure SASRec can learn."""
    movies = sources.read_movies(folder).set_index("movie")["genres"]
    r = ratings.sort_values(["user", "timestamp"], kind="stable")
    g = movies.loc[r.movie].map(set).to_numpy()
    same_user = r.user.to_numpy()[1:] == r.user.to_numpy()[:-1]
    shared = np.array([bool(a & b) for a, b in zip(g[:-1], g[1:])])[same_user].mean()
    perm = np.random.default_rng(0).permutation(len(g))
    rs = r.iloc[perm].sort_values("user", kind="stable")
    gs = movies.loc[rs.movie].map(set).to_numpy()
    same = rs.user.to_numpy()[1:] == rs.user.to_numpy()[:-1]
    shuffled = np.array([bool(a & b) for a, b in zip(gs[:-1], gs[1:])])[same].mean()
    assert shared > shuffled + 0.15, (shared, shuffled)


def test_pipeline_reads_it(folder):
    ds = data.build_ml1m(folder)
    c = ds.counts()
    assert c["train"]["interactions"] > 0.9 * sum(c[s]["interactions"] for s in data.SPLITS)
    assert c["dev"]["interactions"] > 0 and c["test"]["interactions"] > 0  # the global day split works
    assert c["items"] > 0.9 * round(synthetic.ML1M_MOVIES * SCALE)        # 5-core keeps most movies
    assert ds.items.year.notna().all() and ds.items.genres.map(len).min() >= 1  # metadata for concepts
    inst = data.build_instances(ds)
    assert len(inst["test"]) > 0


def test_deterministic_for_a_seed(folder, tmp_path):
    again = synthetic.write_scaled_movielens(tmp_path / "a" / "ml-1m", SCALE, seed=0)
    other = synthetic.write_scaled_movielens(tmp_path / "b" / "ml-1m", SCALE, seed=1)
    for f in ("ratings.dat", "movies.dat", "users.dat"):
        assert _md5(again / f) == _md5(folder / f)
    assert _md5(other / "ratings.dat") != _md5(folder / "ratings.dat")


def test_fast_ratings_reader_equals_the_line_reader(folder, monkeypatch):
    """sources reads a clean all-integer ratings.dat with pandas' C parser: same frame as the line reader."""
    fast = sources.read_ratings(folder)
    monkeypatch.setattr(sources, "read_numeric_fast", lambda raw, names: None)
    assert fast.equals(sources.read_ratings(folder))


@pytest.mark.parametrize("bad, line", [(b"1::2::5\n", 2), (b"1::2:5::3::956703932\n", 2), (b"1::2::5::x\n", 2)])
def test_fast_reader_leaves_bad_lines_to_the_line_reader(tmp_path, bad, line):
    f = tmp_path / "ratings.dat"
    f.write_bytes(b"1::1::5::956703932\n" + bad)
    with pytest.raises(sources.DataError, match=f"line {line}"):
        sources.read_ratings(tmp_path)


def test_scaling_table_states_memory_against_ram_and_superlinear_stages():
    """bench_scale's Markdown: slopes from the log-log fit (time x16 for 4x the data -> slope 2, flagged;
    memory x30 -> 2.45), the largest peak held against the machine's memory, and a scale that failed named."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).parents[1] / "benchmarks" / "bench_scale.py")
    bs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bs)
    res = [{"scale": 1.0, "ratings": 10, "train": 100, "users": 1, "items": 1, "generate_s": 0.1, "rc": 0,
            "seconds": {"05_x": 10.0, "06_y": 5.0}, "peak_mb": {"05_x": 1024.0, "06_y": 512.0}},
           {"scale": 4.0, "ratings": 40, "train": 400, "users": 4, "items": 4, "generate_s": 0.2, "rc": 1,
            "seconds": {"05_x": 160.0, "06_y": 20.0}, "peak_mb": {"05_x": 30 * 1024.0, "06_y": 2048.0}}]
    assert bs.slopes(res, "seconds") == pytest.approx({"05_x": 2.0, "06_y": 1.0})
    md = bs.markdown(res, "2 CPUs", ram_gib=24, note="Ran alone.")
    assert "| 05_x | 10.0 | 160.0 | 1,024 | 30,720 | 2.00 **superlinear** | 2.45 **superlinear** |" in md
    assert "Ran alone." in md
    assert "- Largest peak at 4x: 30.0 GiB in 05_x, **over** the machine's 24 GiB." in md
    assert "- Time growing faster than linearly (slope > 1.15): 05_x (2.00)." in md
    assert "- **Did not finish:** 4x (exit 1)" in md
    ok = bs.markdown([res[0], {**res[1], "rc": 0, "peak_mb": {"05_x": 2048.0}}], "2 CPUs", ram_gib=24)
    assert "within the machine's 24 GiB" in ok and "Did not finish" not in ok
