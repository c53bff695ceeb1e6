"""Data prep: the ML_1MTOPK protocol on tiny synthetic files, clear errors for bad input, the exact
reference split on the real data (when present), and ReChorus sequence semantics."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsae_utils import data, sources, synthetic

SHARED = Path(os.environ.get("RECSAE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def test_tiny_protocol_invariants(tiny_ds):
    c = tiny_ds.counts()
    assert c["train"]["interactions"] > 0 and c["dev"]["interactions"] > 0 and c["test"]["interactions"] > 0
    train_u, train_i = set(tiny_ds.train.user_id), set(tiny_ds.train.item_id)
    for s in ("dev", "test"):  # unseen users/items dropped
        assert set(tiny_ds.split(s).user_id) <= train_u and set(tiny_ds.split(s).item_id) <= train_i
    # ids are 1..N, dense, in numeric order of the original movie ids
    assert tiny_ds.items.item_id.tolist() == list(range(1, tiny_ds.n_items))
    assert np.all(np.diff(tiny_ds.items.movie_id.to_numpy()) > 0)
    # day split: every dev time is after every train time's day, test after dev
    assert tiny_ds.train.time.max() < tiny_ds.dev.time.min() + 86400
    assert tiny_ds.items.popularity.sum() == c["train"]["interactions"]
    assert tiny_ds.items.loc[0, "title"] == "Amélie Test (2001)"  # latin-1 decoded
    assert tiny_ds.items.loc[0, "genres"] == ["Comedy", "Romance"] and tiny_ds.items.loc[0, "year"] == 2001


def test_core_filter_and_threshold():
    r = pd.DataFrame({"user": [1] * 5 + [2] * 5 + [3] * 4 + [1],
                      "movie": [10, 11, 12, 13, 14] * 2 + [10, 11, 12, 13] + [15],
                      "rating": [5] * 14 + [3], "timestamp": np.arange(15) * 86400 + 956703932})
    # items 10..14 have 3,3,3,3,2 positives -> 14 dropped -> users drop below 5 -> nothing left
    with pytest.raises(data.DataError, match="no interactions left"):
        data.ml1m_topk_splits(r)


def test_day_boundary_uses_utc_plus_8():
    # 2000-04-25 16:30 UTC is 2000-04-26 00:30 in UTC+8: a different calendar day there
    ts = 956680200
    days_utc8 = (ts + data.ML1M_TZ_OFFSET_S) // 86400 - (ts - 3600 + data.ML1M_TZ_OFFSET_S) // 86400
    assert days_utc8 == 1 and (ts // 86400 - (ts - 3600) // 86400) == 0


def test_legacy_quicksort_matches_sorted_values():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 50, 500).astype(float)
    order = data.legacy_quicksort_argsort(v)
    assert sorted(order.tolist()) == list(range(500))
    assert np.all(np.diff(v[order]) >= 0)


@pytest.mark.parametrize("content,problem", [
    ("1::10::5::978300760\n1::11::5\n", "line 2: expected 4"),
    ("1,10,5,978300760\n", "wrong separator"),
    ("1::10::5::978300760\n1::abc::5::978300761\n", "line 2: field 'movie' is not an integer"),
    ("1::10::9::978300760\n", "rating 9 outside 1..5"),
    ("", "file is empty"),
])
def test_bad_ratings_give_clear_errors(tmp_path, content, problem):
    (tmp_path / "ratings.dat").write_text(content)
    with pytest.raises(data.DataError) as e:
        sources.read_ratings(tmp_path)
    assert "ratings.dat" in str(e.value) and problem in str(e.value)


def test_missing_file_and_tab_separator(tmp_path):
    with pytest.raises(data.DataError, match="ratings.dat: file not found"):
        sources.read_ratings(tmp_path)
    (tmp_path / "ratings.dat").write_text("1\t10\t5\t978300760\n")
    with pytest.raises(data.DataError, match="line 1: tab character"):
        sources.read_ratings(tmp_path)


def test_missing_movie_metadata(tmp_path, tiny_root):
    folder = tmp_path / "ml-1m"
    synthetic.write_tiny_movielens(folder)
    lines = (folder / "movies.dat").read_text(encoding="latin-1").splitlines()
    (folder / "movies.dat").write_text("\n".join(lines[1:]) + "\n", encoding="latin-1")
    with pytest.raises(data.DataError, match="movies.dat: no entry for movie ids"):
        data.build_ml1m(folder)


def test_rechorus_loader_errors(tmp_path):
    (tmp_path / "train.csv").write_text("user_id\titem_id\ttime\n1\t2\t3\n")
    (tmp_path / "dev.csv").write_text("user_id\titem\ttime\n1\t2\t3\n")
    (tmp_path / "test.csv").write_text("user_id\titem_id\ttime\n1\tx\t3\n")
    with pytest.raises(data.DataError, match=r"dev.csv: missing column\(s\) \['item_id'\]"):
        data.load_rechorus(tmp_path)
    (tmp_path / "dev.csv").write_text("user_id\titem_id\ttime\n1\t2\t3\n")
    with pytest.raises(data.DataError, match="test.csv, line 2: column 'item_id' is not numeric"):
        data.load_rechorus(tmp_path)


def test_cache_reused_and_invalidated(tmp_path):
    folder = synthetic.write_tiny_movielens(tmp_path / "src" / "ml-1m")
    out = tmp_path / "processed"
    a = data.load_dataset("ml-1m", out, source=folder)
    mtime = (out / "train.parquet").stat().st_mtime_ns
    b = data.load_dataset("ml-1m", out, source=folder)
    assert (out / "train.parquet").stat().st_mtime_ns == mtime  # reused
    pd.testing.assert_frame_equal(a.train, b.train)
    assert b.items.genres.iloc[0] == ["Comedy", "Romance"]
    synthetic.write_tiny_movielens(folder, seed=1)  # new data -> rebuilt
    c = data.load_dataset("ml-1m", out, source=folder)
    assert c.manifest["source_sha256"] != a.manifest["source_sha256"]


def test_instances_follow_rechorus_semantics():
    # user 1: items 5,6,7 in train then 8 in dev; user 2: 9 then 10 (same time as user 1's first)
    train = pd.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [5, 6, 7, 9, 10], "time": [1, 2, 2, 1, 3]})
    dev = pd.DataFrame({"user_id": [1], "item_id": [8], "time": [4]})
    test = pd.DataFrame({"user_id": [2], "item_id": [5], "time": [5]})
    ds = data.Dataset("t", train, dev, test, pd.DataFrame({"item_id": np.arange(1, 11)}))
    inst = data.build_instances(ds, history_max=2)
    tr = inst["train"]  # position-0 rows (first item of each user) are not instances
    assert tr.item.tolist() == [6, 7, 10] and tr.position.tolist() == [1, 2, 1]
    assert tr.hist.tolist() == [[5, 0], [6, 5], [9, 0]] and tr.length.tolist() == [1, 2, 1]
    assert inst["dev"].hist.tolist() == [[7, 6]]       # truncated to history_max, most recent first
    assert inst["test"].hist.tolist() == [[10, 9]]


needs_real = pytest.mark.skipif(not (SHARED / "ml-1m" / "ratings.dat").exists(),
                                reason="real MovieLens-1M not present (set RECSAE_DATA_DIR)")


@needs_real
def test_real_ml1m_matches_rechorus_files_exactly():
    ds = data.build_ml1m(SHARED / "ml-1m")
    c = ds.counts()
    assert {s: c[s]["interactions"] for s in data.SPLITS} == {"train": 568_761, "dev": 2_562, "test": 2_874}
    assert c["users"] == 6_032 and c["items"] == 3_125
    ref = SHARED / "MovieLens_1M" / "ML_1MTOPK"
    if ref.exists():
        assert data.check_reference(ds, ref) == {"train": True, "dev": True, "test": True}
        meta = pd.read_csv(ref / "item_meta_all_info.csv", sep="\t").sort_values("item_id")
        assert (meta.movieId.to_numpy() == ds.items.movie_id.to_numpy()).all()


@pytest.mark.skipif(not (SHARED / "Grocery_and_Gourmet_Food" / "train.csv").exists(), reason="Grocery not present")
def test_real_grocery_counts():
    ds = data.load_rechorus(SHARED / "Grocery_and_Gourmet_Food", "grocery")
    assert ds.n_users - 1 == 14_681 and ds.n_items - 1 == 8_713
    assert len(ds.dev) == len(ds.test) == 14_681 and "i_category" in ds.items.columns
