"""Datasets: MovieLens-1M under the ReChorus ML_1MTOPK protocol, any ReChorus-format folder, and the
sequential instances SASRec trains and ranks on.

Protocol (ReChorus `data/MovieLens_1M/MovieLens-1M.ipynb`, see docs/protocol.md, "Data"):
ratings >= 4 are positives; users and items are 5-core filtered on positives, repeated until stable
(rows of every rating kept for the survivors); `day` = calendar days since the earliest date *in UTC+8*
(the machine that made the reference files); only positives are kept; train = day <= int(0.8 D),
dev = int(0.8 D) < day <= int(0.9 D), test = the rest, D = max day of the positives; dev/test rows whose
user or item is not in train are dropped; ids are remapped 1..N in numeric order of the original ids.

Beyond the reference, which assumes the official files (none of these fires on them): the input is named
by one fingerprint (`source_fingerprint`); implausible timestamps, a second rating of a (user, movie), mixed
text encodings and empty splits are errors; exact duplicate lines are dropped with a printed count.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts
from .sources import (ML1M_FILES, SPLITS, DataError, find_ml1m, fingerprint, item_meta_file, read_movies,
                      read_ratings, read_rechorus_csv, resolve_source)

ML1M_TZ_OFFSET_S = 8 * 3600  # the reference notebook ran in Asia/Shanghai (UTC+8, no DST)
PROTOCOL_ML1M = {"min_rating": 4, "core": 5, "split": [0.8, 0.9], "tz_offset_hours": 8, "split_by": "day"}


# ----------------------------------------------------------------------------------------------------
# The dataset object shared by every stage


@dataclass
class Dataset:
    """Interactions split into train/dev/test (columns user_id, item_id, time) plus item metadata.

    Ids are 1..N; 0 is padding, so `n_items` = max item id + 1 (the size of SASRec's item table).
    `items` has one row per item id 1..n_items-1 with at least item_id and popularity (train count);
    MovieLens adds title, year, genres (list) and movie_id.
    """

    name: str
    train: pd.DataFrame
    dev: pd.DataFrame
    test: pd.DataFrame
    items: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return int(max(df.user_id.max() for df in (self.train, self.dev, self.test))) + 1

    @property
    def n_items(self) -> int:
        return int(max(df.item_id.max() for df in (self.train, self.dev, self.test))) + 1

    def split(self, name: str) -> pd.DataFrame:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]

    def counts(self) -> dict:
        out = {}
        for s in SPLITS:
            df = self.split(s)
            out[s] = {"interactions": len(df), "users": int(df.user_id.nunique()), "items": int(df.item_id.nunique())}
        out["users"] = self.n_users - 1
        out["items"] = self.n_items - 1
        return out


def content_hash(ds: Dataset) -> str:
    """sha256 of the three splits' (user_id, item_id, time) columns: what SASRec trains on and the instances
    are built from. Trained models and caches are keyed on it, not on split sizes: an edit that keeps the
    sizes (two movies swapped in one user's lines) changes it."""
    h = hashlib.sha256()
    for s in SPLITS:
        df = ds.split(s)
        h.update(f"{s}:{len(df)}\0".encode())
        for c in ("user_id", "item_id", "time"):
            h.update(np.ascontiguousarray(df[c].to_numpy(), dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def ml1m_topk_splits(ratings: pd.DataFrame, min_rating: int = 4, core: int = 5,
                     tz_offset_s: int = ML1M_TZ_OFFSET_S, source: str = "ratings") -> dict[str, pd.DataFrame]:
    """Apply ML_1MTOPK to raw ratings; returns train/dev/test with original ids (user, movie, time, day).
    A split left empty is an error (`source` names the input in it): training or evaluation on it would
    fail later, far from the cause, or report nothing."""
    df = ratings.copy()
    df["label"] = df["rating"] >= min_rating
    while True:  # iterative k-core on positives; rows of every label survive with their user and item
        pos = df[df["label"]]
        uc, ic = pos["user"].value_counts(), pos["movie"].value_counts()
        keep_u, keep_i = uc.index[uc >= core], ic.index[ic >= core]
        mask = df["user"].isin(keep_u) & df["movie"].isin(keep_i)
        if mask.all():
            break
        df = df[mask]
    if df.empty or not df["label"].any():
        raise DataError(f"{source}: no interactions left after {core}-core filtering of ratings >= {min_rating}")
    days = (df["timestamp"].to_numpy() + tz_offset_s) // 86400  # local calendar day number
    df = df.assign(day=days - days.min())
    pos = df[df["label"]]
    d_max = int(pos["day"].max())
    s1, s2 = int(d_max * 0.8), int(d_max * 0.9)
    train = pos[pos["day"] <= s1]
    rest = pos[pos["day"] > s1]
    rest = rest.iloc[legacy_quicksort_argsort(rest["timestamp"].to_numpy())]  # reference tie order
    dev, test = rest[rest["day"] <= s2], rest[rest["day"] > s2]
    tu, ti = set(train["user"]), set(train["movie"])
    dev = dev[dev["user"].isin(tu) & dev["movie"].isin(ti)]
    test = test[test["user"].isin(tu) & test["movie"].isin(ti)]
    out = {}
    for name, part in (("train", train), ("dev", dev), ("test", test)):
        out[name] = part[["user", "movie", "timestamp", "day"]].rename(columns={"timestamp": "time"}).reset_index(drop=True)
    for name, part in out.items():
        if part.empty:
            raise DataError(f"{source}: the {name} split is empty (positives span days 0..{d_max} in UTC+8: "
                            f"train 0..{s1}, dev {s1 + 1}..{s2}, test {s2 + 1}..{d_max}; dev and test keep only "
                            "users and items seen in train)")
    return out


def legacy_quicksort_argsort(values: np.ndarray) -> np.ndarray:
    """Argsort exactly as numpy < 1.25's default (unstable) introsort did.

    The reference files were made by `df.sort_values('time')` (pandas -> numpy quicksort). Equal
    timestamps of one user keep that algorithm's order, which decides their order in the user's sequence;
    newer numpy uses other sorting kernels, so we replay the old algorithm (a few thousand rows, so plain
    Python is fine). Verified against the reference dev/test files row for row.
    """
    v = np.asarray(values).tolist()
    t = list(range(len(v)))
    if len(t) < 2:
        return np.array(t, dtype=np.int64)
    stack: list[tuple[int, int, int]] = []
    pl, pr, depth = 0, len(t) - 1, (len(t).bit_length() - 1) * 2
    while True:
        if depth < 0:  # heapsort fallback of introsort; unreachable for non-adversarial data
            t[pl:pr + 1] = sorted(t[pl:pr + 1], key=v.__getitem__)
        else:
            while pr - pl > 15:  # median-of-three partition
                pm = pl + ((pr - pl) >> 1)
                if v[t[pm]] < v[t[pl]]:
                    t[pm], t[pl] = t[pl], t[pm]
                if v[t[pr]] < v[t[pm]]:
                    t[pr], t[pm] = t[pm], t[pr]
                if v[t[pm]] < v[t[pl]]:
                    t[pm], t[pl] = t[pl], t[pm]
                vp = v[t[pm]]
                pi, pj = pl, pr - 1
                t[pm], t[pj] = t[pj], t[pm]
                while True:
                    pi += 1
                    while v[t[pi]] < vp:
                        pi += 1
                    pj -= 1
                    while vp < v[t[pj]]:
                        pj -= 1
                    if pi >= pj:
                        break
                    t[pi], t[pj] = t[pj], t[pi]
                t[pi], t[pr - 1] = t[pr - 1], t[pi]
                depth -= 1
                if pi - pl < pr - pi:
                    stack.append((pi + 1, pr, depth))
                    pr = pi - 1
                else:
                    stack.append((pl, pi - 1, depth))
                    pl = pi + 1
            for i in range(pl + 1, pr + 1):  # insertion sort of the small partition
                vi, j = t[i], i
                while j > pl and v[vi] < v[t[j - 1]]:
                    t[j] = t[j - 1]
                    j -= 1
                t[j] = vi
        if not stack:
            break
        pl, pr, depth = stack.pop()
    return np.array(t, dtype=np.int64)


def _remap(splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], np.ndarray, np.ndarray]:
    """Original ids -> 1..N in numeric order over train+dev+test."""
    allu = np.unique(np.concatenate([s["user"].to_numpy() for s in splits.values()]))
    alli = np.unique(np.concatenate([s["movie"].to_numpy() for s in splits.values()]))
    out = {}
    for k, s in splits.items():
        out[k] = pd.DataFrame({
            "user_id": np.searchsorted(allu, s["user"].to_numpy()) + 1,
            "item_id": np.searchsorted(alli, s["movie"].to_numpy()) + 1,
            "time": s["time"].to_numpy().astype(np.int64),
        })
    return out, allu, alli


def _popularity(train: pd.DataFrame, n_items: int) -> np.ndarray:
    return np.bincount(train["item_id"].to_numpy(), minlength=n_items)[1:]


def build_ml1m(source: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> Dataset:
    """Parse raw MovieLens-1M (a folder, a zip, or None = the official download into `cache`) and apply
    the ML_1MTOPK protocol."""
    folder = find_ml1m(source, cache)
    ratings = read_ratings(folder)
    movies = read_movies(folder)
    splits, users, movie_ids = _remap(ml1m_topk_splits(ratings, source=str(Path(folder) / "ratings.dat")))
    meta = movies.set_index("movie")
    missing = np.setdiff1d(movie_ids, meta.index.to_numpy())
    if missing.size:
        raise DataError(f"{Path(folder) / 'movies.dat'}: no entry for movie ids {missing[:5].tolist()}")
    m = meta.loc[movie_ids]
    n_items = len(movie_ids) + 1
    items = pd.DataFrame({
        "item_id": np.arange(1, n_items), "movie_id": movie_ids, "title": m["title"].to_numpy(),
        "year": m["year"].to_numpy(), "genres": m["genres"].to_numpy(),
        "popularity": _popularity(splits["train"], n_items),
    })
    manifest = {
        "dataset": "ml-1m", "protocol": "ReChorus ML_1MTOPK", "protocol_params": PROTOCOL_ML1M,
        "source_sha256": {f: artifacts.file_sha256(Path(folder) / f) for f in ML1M_FILES},
    }
    ds = Dataset("ml-1m", splits["train"], splits["dev"], splits["test"], items, manifest)
    ds.manifest["counts"] = ds.counts()
    return ds


# ----------------------------------------------------------------------------------------------------
# ReChorus-format folders (train/dev/test.csv, tab-separated, optional item_meta)


def load_rechorus(folder: str | os.PathLike, name: str | None = None) -> Dataset:
    """Load a dataset already in ReChorus format (ids used as they are)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found")
    parts = {s: read_rechorus_csv(folder / f"{s}.csv") for s in SPLITS}
    n_items = int(max(p.item_id.max() for p in parts.values())) + 1
    items = pd.DataFrame({"item_id": np.arange(1, n_items), "popularity": _popularity(parts["train"], n_items)})
    if (p := item_meta_file(folder)) is not None:
        try:
            meta = pd.read_csv(p, sep="\t")
        except pd.errors.EmptyDataError:
            raise DataError(f"{p}: file is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"{p}: cannot parse as a tab-separated item table ({e})") from None
        if "item_id" not in meta.columns:
            raise DataError(f"{p}: no item_id column (expected a tab-separated header with item_id)")
        if "genres" in meta.columns:
            meta["genres"] = meta["genres"].fillna("").str.split("|")
        if "title" in meta.columns:
            meta["year"] = pd.to_numeric(meta["title"].str.extract(r"\((\d{4})\)\s*$")[0],
                                         errors="coerce").astype("Int64")
        meta = meta.rename(columns={"movieId": "movie_id"})
        items = items.merge(meta, on="item_id", how="left")
    manifest = {"dataset": name or folder.name, "protocol": "ReChorus format, as given",
                "source_sha256": {f"{s}.csv": artifacts.file_sha256(folder / f"{s}.csv") for s in SPLITS}}
    ds = Dataset(name or folder.name, parts["train"], parts["dev"], parts["test"], items, manifest)
    ds.manifest["counts"] = ds.counts()
    return ds


# ----------------------------------------------------------------------------------------------------
# Caching processed datasets (parquet + manifest)

def load_dataset(name: str, out_dir: str | os.PathLike, source: str | os.PathLike | None = None,
                 cache: str | os.PathLike | None = None) -> Dataset:
    """Build (or reuse from `out_dir`) a processed dataset. `name` is 'ml-1m' (raw MovieLens-1M through
    the ML_1MTOPK protocol; `source` a folder, a zip, or None = the official download into `cache`) or a
    ReChorus-format dataset (`source` its folder). The cache is reused only while the source's
    fingerprint matches its manifest."""
    if source is None and name != "ml-1m":
        raise DataError(f"dataset {name!r}: no source folder given")
    fp = fingerprint(Path(source) if source is not None else None, name)
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and all((out / f"{s}.parquet").exists() for s in (*SPLITS, "items")):
        man = artifacts.read_json(manifest_path)
        if man.get("source_fingerprint") == fp:
            parts = {s: pd.read_parquet(out / f"{s}.parquet") for s in (*SPLITS, "items")}
            if "genres" in parts["items"].columns:
                parts["items"]["genres"] = parts["items"]["genres"].map(lambda g: list(g) if g is not None else [])
            return Dataset(man["dataset"], parts["train"], parts["dev"], parts["test"], parts["items"], man)
    ds = build_ml1m(source, cache) if name == "ml-1m" else load_rechorus(source, name)
    ds.manifest["source_fingerprint"] = fp
    for s in SPLITS:
        artifacts.write_parquet(out / f"{s}.parquet", ds.split(s))
    artifacts.write_parquet(out / "items.parquet", ds.items)
    artifacts.write_json(manifest_path, ds.manifest)  # written last: it marks the cache complete
    return ds


def prepare(cfg, cache: str | os.PathLike | None = None) -> Dataset:
    """The data stage for a RunConfig: processed dataset in <run_dir>/data, built once and reused.
    The input is `resolve_source(cfg.data_source, cfg.dataset)`; downloads and extracted zips go to
    `cache` (default cfg.cache_dir: $RECSAE_CACHE_DIR or ~/.cache/recsae)."""
    src = resolve_source(cfg.data_source, cfg.dataset)
    return load_dataset(cfg.dataset, Path(cfg.run_dir) / "data", source=src, cache=cache or cfg.cache_dir)


ML1M_TOPK_COUNTS = {"train": 568_761, "dev": 2_562, "test": 2_874, "users": 6_032, "items": 3_125}


def check_reference(ds: Dataset, reference_dir: str | os.PathLike) -> dict[str, bool]:
    """Compare our splits with ReChorus files (same rows, same order) where a reference folder exists."""
    ref = load_rechorus(reference_dir)
    out = {}
    for s in SPLITS:
        a = ds.split(s)[["user_id", "item_id", "time"]].to_numpy()
        b = ref.split(s)[["user_id", "item_id", "time"]].to_numpy()
        out[s] = bool(a.shape == b.shape and (a == b).all())
    return out


# ----------------------------------------------------------------------------------------------------
# Sequential instances (ReChorus SeqReader semantics)


@dataclass
class Instances:
    """One split's instances: target item, user, position in the user's timeline, and the history
    window `hist` of the last `history_max` items *most recent first* (0-padded), with its length."""

    user: np.ndarray     # (n,)
    item: np.ndarray     # (n,) target
    position: np.ndarray  # (n,) index of the target in the user's full timeline
    hist: np.ndarray     # (n, history_max) most recent first
    length: np.ndarray   # (n,) number of valid history items (>= 1)

    def __len__(self) -> int:
        return len(self.item)

    def subset(self, idx) -> "Instances":
        return Instances(self.user[idx], self.item[idx], self.position[idx], self.hist[idx], self.length[idx])


def build_instances(ds: Dataset, history_max: int = 20) -> dict[str, Instances]:
    """ReChorus: concatenate train/dev/test, sort stably by (time, user_id), give each row its index in the
    user's timeline, keep rows with position > 0; history = the previous items (any split)."""
    frames = [ds.split(s).assign(_split=i) for i, s in enumerate(SPLITS)]
    all_df = pd.concat(frames, ignore_index=True)
    order = np.lexsort((all_df["user_id"].to_numpy(), all_df["time"].to_numpy()))  # stable, time then user
    all_df = all_df.iloc[order]
    all_df = all_df.iloc[np.argsort(all_df["user_id"].to_numpy(), kind="stable")].reset_index(drop=True)
    users = all_df["user_id"].to_numpy()
    items = all_df["item_id"].to_numpy()
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    pos = np.arange(len(users)) - first
    j = np.arange(history_max)
    length = np.minimum(pos, history_max)
    idx = np.arange(len(users))[:, None] - 1 - j[None, :]
    hist = np.where(j[None, :] < length[:, None], items[np.clip(idx, 0, None)], 0)
    out = {}
    split_col = all_df["_split"].to_numpy()
    for i, s in enumerate(SPLITS):
        sel = np.flatnonzero((split_col == i) & (pos > 0))
        out[s] = Instances(users[sel], items[sel], pos[sel], hist[sel].astype(np.int64), length[sel])
    return out


def user_item_csr(ds: Dataset, splits=SPLITS) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, items) of each user's distinct items over `splits`: used for masking and negatives."""
    df = pd.concat([ds.split(s)[["user_id", "item_id"]] for s in splits]).drop_duplicates()
    df = df.sort_values(["user_id", "item_id"])
    indptr = np.zeros(ds.n_users + 1, dtype=np.int64)
    np.add.at(indptr, df["user_id"].to_numpy() + 1, 1)
    return np.cumsum(indptr), df["item_id"].to_numpy()
