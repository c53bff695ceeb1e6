"""benchmarks/bench_vs_rechorus.py without ReChorus: the files it writes are what ReChorus's readers take
(tab-separated, the three columns, ids 1..N, rows that SeqReader's join on (user_id, item_id, time) maps
one to one), its parser reads ReChorus's epoch lines, and its report section replaces only itself."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsae_utils import artifacts, data

_spec = importlib.util.spec_from_file_location(
    "bench_vs_rechorus", artifacts.repo_root() / "benchmarks" / "bench_vs_rechorus.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_written_files_are_what_rechorus_reads(tiny_ds, tiny_inst, tmp_path):
    folder = bench.write_rechorus_dataset(tiny_ds, tmp_path / "ML_1MTOPK")
    parts = {}
    for s in ("train", "dev", "test"):
        text = (folder / f"{s}.csv").read_text()
        assert text.splitlines()[0] == "user_id\titem_id\ttime"
        # ReChorus BaseReader: pd.read_csv(sep='\t'), then eval of string columns: there must be none
        df = pd.read_csv(folder / f"{s}.csv", sep="\t")
        assert list(df.columns) == ["user_id", "item_id", "time"]
        assert all(pd.api.types.is_integer_dtype(df[c]) for c in df.columns)
        assert df.equals(tiny_ds.split(s)[["user_id", "item_id", "time"]].reset_index(drop=True))
        parts[s] = df
    all_df = pd.concat(parts.values())
    # n_items = max id + 1 with 0 left for padding, as ReChorus computes it and as our model sizes its table
    assert all_df.user_id.min() == 1 and all_df.item_id.min() == 1
    assert all_df.item_id.max() + 1 == tiny_ds.n_items and all_df.user_id.max() + 1 == tiny_ds.n_users
    # SeqReader merges each split with the position table on (user_id, item_id, time): a duplicated key
    # would multiply rows; every dev/test user and item must be in train (its clicked sets assume so)
    assert not all_df.duplicated(["user_id", "item_id", "time"]).any()
    assert set(parts["dev"].user_id) | set(parts["test"].user_id) <= set(parts["train"].user_id)
    assert set(parts["dev"].item_id) | set(parts["test"].item_id) <= set(parts["train"].item_id)
    # and our own reader of ReChorus folders gets the same instances back
    back = data.build_instances(data.load_rechorus(folder))
    for s in ("train", "dev", "test"):
        assert np.array_equal(back[s].hist, tiny_inst[s].hist) and np.array_equal(back[s].item, tiny_inst[s].item)


LOG = """INFO:root:Optimizer: Adam
INFO:root:Epoch 1     loss=0.6517 [52.5 s]	dev=(HR@5:0.0367,NDCG@5:0.0221) [6.1 s] *
Epoch 2     loss=0.4930 [58.1 s]	dev=(HR@5:0.0431,NDCG@5:0.0265) [5.8 s] *
Epoch 10    loss=0.3012 [101.0 s]	dev=(HR@5:0.0000,NDCG@5:0.0000) [5.0 s]
Best Iter(dev)=    2	 dev=(HR@5:0.0431,NDCG@5:0.0265) [123.4 s]
"""


def test_parses_rechorus_epoch_lines():
    rows = bench.parse_rechorus_log(LOG)
    assert [r["epoch"] for r in rows] == [1, 2, 10]
    assert [r["train_seconds"] for r in rows] == [52.5, 58.1, 101.0]
    assert [r["loss"] for r in rows] == [0.6517, 0.4930, 0.3012]
    assert rows[1]["dev"] == {"HR@5": 0.0431, "NDCG@5": 0.0265}
    assert bench.parse_rechorus_log("Best Iter(dev)=    2\t dev=(HR@5:0.04) [1.0 s]") == []


@pytest.mark.parametrize("existing", [None, "# Benchmarks\n\n## A\nkeep a\n",
                                      "# Benchmarks\n\n## SASRec vs ReChorus\nold\n\n## B\nkeep b\n"])
def test_section_replaces_only_itself(tmp_path, existing):
    p = tmp_path / "benchmarks.md"
    if existing is not None:
        p.write_text(existing)
    for body in ("first", "second"):
        bench.upsert_section(p, f"{bench.SECTION}\n\n{body}\n")
    text = p.read_text()
    assert text.count(bench.SECTION) == 1 and "second" in text and "first" not in text and "old" not in text
    assert text.startswith("# Benchmarks")
    for keep in ("keep a", "keep b"):
        assert (keep in text) == (existing is not None and keep in existing)
    if existing and "## B" in existing:
        assert text.index(bench.SECTION) < text.index("## B")
