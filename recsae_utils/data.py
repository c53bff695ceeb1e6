"""Datasets: MovieLens-1M under the ReChorus ML_1MTOPK protocol, any ReChorus-format folder, and the
sequential instances SASRec trains and ranks on.

Protocol (ReChorus `data/MovieLens_1M/MovieLens-1M.ipynb`, see shared/spec/protocol.md §1):
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
import re
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
ML1M_TZ_OFFSET_S = 8 * 3600  # the reference notebook ran in Asia/Shanghai (UTC+8, no DST)
PROTOCOL_ML1M = {"min_rating": 4, "core": 5, "split": [0.8, 0.9], "tz_offset_hours": 8, "split_by": "day"}
SPLITS = ("train", "dev", "test")
DATASETS = {"ml-1m": "ml-1m", "ML_1MTOPK": "MovieLens_1M/ML_1MTOPK", "grocery": "Grocery_and_Gourmet_Food"}
ML1M_FILES = ("ratings.dat", "movies.dat")  # what data prep reads (users.dat and README are not used)
# Earliest plausible rating time, 1995-01-01 UTC: before MovieLens existed, and above any Unix-seconds
# time that lost a digit (a time before the year 2286 divided by 10 falls before 1975).
TIME_MIN = 788_918_400


class DataError(ValueError):
    """Bad input data: the message names the file, the line where known, and the problem."""


# ----------------------------------------------------------------------------------------------------
# Locating the input, and the fingerprint that names it


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "recsae"


def resolve_source(data_dir: str | os.PathLike | None, dataset: str) -> Path | None:
    """The input the data stage reads for `dataset` under `data_dir` (RECSAE_DATA_DIR).

    ml-1m: <data_dir>/ml-1m/ (with ratings.dat), else <data_dir>/ml-1m.zip, else <data_dir> itself when it
    holds ratings.dat; None (no data_dir) means the official download. A ReChorus dataset: its folder.
    A data_dir that does not exist, or lacks the dataset, is an error naming it: never a silent fallback
    to the download cache.
    """
    if data_dir is None:
        if dataset == "ml-1m":
            return None
        raise DataError(f"dataset {dataset!r} is read from a local folder: set RECSAE_DATA_DIR (data_dir) to "
                        f"the folder holding {DATASETS.get(dataset, dataset)}/")
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise DataError(f"{d}: data folder not found (RECSAE_DATA_DIR / data_dir)")
    if dataset == "ml-1m":
        for c in (d / "ml-1m", d / "ml-1m.zip", d):
            if (c.is_dir() and (c / "ratings.dat").exists()) or c.is_file():
                return c
        raise DataError(f"{d}: holds neither ml-1m/ratings.dat nor ml-1m.zip (RECSAE_DATA_DIR / data_dir)")
    folder = d / DATASETS.get(dataset, dataset)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found (data_dir={d})")
    return folder


def source_fingerprint(data_dir: str | os.PathLike | None, dataset: str) -> str:
    """One string naming the data `dataset` is built from; the pipeline's stage 01 key and the manifest
    record it, so any other input reruns data prep."""
    return _fingerprint(resolve_source(data_dir, dataset), dataset)


def _fingerprint(src: Path | None, dataset: str) -> str:
    """A zip: its md5 (the checksum GroupLens's archive is known by). A folder: sha256 over name, size and
    sha256 of each file data prep reads: contents, not mtimes, which change on a plain copy and can survive
    a replacement (cp -p, rsync, unzip keep them). Hashing ~25 MB costs about 0.1 s."""
    if src is None:
        return f"download md5:{ML1M_MD5}"
    if src.is_file():
        return f"zip md5:{_md5(src)}"
    lines = []
    for name, p in _input_files(src, dataset).items():
        lines.append(f"{name}:{p.stat().st_size}:{artifacts.file_sha256(p)}" if p.exists() else f"{name}:missing")
    return "files sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _input_files(folder: Path, dataset: str) -> dict[str, Path]:
    if dataset == "ml-1m":
        return {f: folder / f for f in ML1M_FILES}
    files = {f"{s}.csv": folder / f"{s}.csv" for s in SPLITS}
    if (meta := _item_meta_file(folder)) is not None:
        files[meta.name] = meta
    return files


def _item_meta_file(folder: Path) -> Path | None:
    return next((p for p in (folder / "item_meta_all_info.csv", folder / "item_meta.csv") if p.exists()), None)


def _md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


# ----------------------------------------------------------------------------------------------------
# Reading the raw MovieLens-1M files


def find_ml1m(source: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Return a folder holding ratings.dat/movies.dat: `source` itself (a folder), `source` extracted (a
    zip), or, with no source, the official archive downloaded into `cache` (md5-checked by pooch)."""
    cache = Path(cache) if cache else default_cache_dir()
    if source is None:
        import pooch

        zpath = pooch.retrieve(ML1M_URL, known_hash=f"md5:{ML1M_MD5}", fname="ml-1m.zip", path=cache)
        return _extract_zip(Path(zpath), cache)
    src = Path(source)
    if src.is_dir() and (src / "ratings.dat").exists():
        return src
    if src.is_file():
        return _extract_zip(src, cache)
    raise DataError(f"{src}: not a folder with ratings.dat nor a zip archive")


def _extract_zip(zpath: Path, cache: Path) -> Path:
    """Extract into <cache>/ml-1m-<md5>/: keyed by the archive's checksum, so another zip under the same
    name is extracted anew. An archive other than GroupLens's official one is used with a printed note."""
    md5 = _md5(zpath)
    if md5 != ML1M_MD5:
        print(f"note: {zpath} is not the official ml-1m.zip (md5 {md5}, official {ML1M_MD5}); using it as given")
    out = cache / f"ml-1m-{md5}"
    if (out / "ratings.dat").exists():
        return out
    try:
        with zipfile.ZipFile(zpath) as z:
            members: dict[str, str] = {}
            for n in z.namelist():
                base = n.rsplit("/", 1)[-1]
                if n.startswith("__MACOSX/") or base not in ("ratings.dat", "movies.dat", "users.dat", "README"):
                    continue
                if base in members:
                    raise DataError(f"{zpath}: archive holds two {base} ({members[base]}, {n})")
                members[base] = n
            if "ratings.dat" not in members:
                raise DataError(f"{zpath}: archive has no ratings.dat")
            tmp = cache / f".ml-1m-{md5}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for base, n in members.items():
                (tmp / base).write_bytes(z.read(n))
            shutil.rmtree(out, ignore_errors=True)  # an incomplete earlier folder
            os.replace(tmp, out)
    except zipfile.BadZipFile as e:
        raise DataError(f"{zpath}: not a valid zip archive ({e})") from None
    return out


# A UTF-8 multi-byte character. Latin-1 text almost never holds one (it would be a capital accented letter
# followed by a symbol such as '©' or '±'); the official movies.dat holds none.
_UTF8_CHAR = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _decode(path: Path, raw: bytes) -> str:
    """GroupLens files are latin-1. Bytes that decode as UTF-8 (and are not plain ASCII) were saved as
    UTF-8 and are read so; latin-1 would turn 'Amélie' into 'AmÃ©lie'. A file holding UTF-8 characters and
    bytes that are not UTF-8 mixes encodings and is refused, as no single decoding reads it right."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        m = _UTF8_CHAR.search(raw)
        if m:
            line_u, line_l = raw[:m.start()].count(b"\n") + 1, raw[:e.start].count(b"\n") + 1
            raise DataError(f"{path}: mixed text encodings: line {line_u} holds UTF-8 text "
                            f"({m.group().decode('utf-8')!r}) but line {line_l} is not UTF-8 (latin-1?); "
                            "save the whole file in one encoding") from None
        return raw.decode("latin-1")
    print(f"note: {path} is UTF-8, not latin-1 as GroupLens ships it: read as UTF-8")
    return text


def _read_dat(path: Path, names: list[str], numeric: list[str]) -> pd.DataFrame:
    """Parse a GroupLens `::` file (latin-1 or UTF-8) with a clear error for any malformed line."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    if b"\t" in raw:
        line = raw[: raw.index(b"\t")].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: tab character found; expected '::'-separated fields")
    text = _decode(path, raw)
    lines = text.splitlines()
    n_fields = len(names)
    # fast path: split everything at once, then check the shape of each line
    parts = pd.Series(lines, dtype=object).str.split("::", regex=False)
    lens = parts.str.len().to_numpy()
    bad = np.flatnonzero(lens != n_fields)
    if bad.size:
        i = int(bad[0])
        got = int(lens[i])
        hint = " (wrong separator? fields must be separated by '::')" if got == 1 else ""
        raise DataError(
            f"{path}, line {i + 1}: expected {n_fields} '::'-separated fields ({', '.join(names)}), "
            f"found {got}{hint}: {lines[i][:80]!r}"
        )
    df = pd.DataFrame(parts.tolist(), columns=names)
    for col in numeric:
        vals = pd.to_numeric(df[col], errors="coerce")
        badv = np.flatnonzero(vals.isna().to_numpy() | (vals.to_numpy() % 1 != 0))
        if badv.size:
            i = int(badv[0])
            raise DataError(f"{path}, line {i + 1}: field {col!r} is not an integer: {df[col].iat[i]!r}")
        df[col] = vals.astype(np.int64)
    return df


def read_ratings(folder: str | os.PathLike) -> pd.DataFrame:
    """ratings.dat -> DataFrame[user, movie, rating, timestamp] in original line order."""
    path = Path(folder) / "ratings.dat"
    df = _read_dat(path, ["user", "movie", "rating", "timestamp"], ["user", "movie", "rating", "timestamp"])
    bad = np.flatnonzero(~df["rating"].between(1, 5).to_numpy())
    if bad.size:
        raise DataError(f"{path}, line {bad[0] + 1}: rating {df['rating'].iat[bad[0]]} outside 1..5")
    _check_times(path, df["timestamp"].to_numpy())
    return _drop_duplicates(path, df)


def _check_times(path: Path, ts: np.ndarray) -> None:
    """Timestamps are Unix seconds between TIME_MIN (1995) and now. A fixed range, not a comparison with
    neighbouring lines: it needs no assumption on the file's order, and a line cut inside its timestamp
    (one digit lost or more) always falls before it. One such line would otherwise become day 0 of the
    day split and push every real rating out of train."""
    hi = int(time.time()) + 86400
    bad = np.flatnonzero((ts < TIME_MIN) | (ts > hi))
    if not bad.size:
        return
    i, v = int(bad[0]), int(ts[bad[0]])
    try:
        when = datetime.fromtimestamp(v, timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        when = "out of calendar range"
    hint = ""
    if i == len(ts) - 1:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                hint = "; the file ends inside this line (no final newline): is it truncated?"
    raise DataError(f"{path}, line {i + 1}: timestamp {v} ({when}) is outside the plausible range "
                    f"1995-01-01 .. now (Unix seconds){hint}")


def _drop_duplicates(path: Path, df: pd.DataFrame) -> pd.DataFrame:
    """Exact duplicate lines (same user, movie, rating, time) are dropped with a printed count: a copied
    line records no new event, and ReChorus drops such rows in its Grocery preparation (its ML-1M notebook
    has none to meet: the official file holds one line per (user, movie)). A second rating of the same
    (user, movie) with another rating or time is an error: which one is right is not ours to guess, and
    either choice changes labels and the day split."""
    dup = df.duplicated().to_numpy()
    if dup.any():
        print(f"{path}: dropped {int(dup.sum()):,} exact duplicate line(s) (first: line {np.flatnonzero(dup)[0] + 1})")
        df = df[~dup]
    rep = df.duplicated(["user", "movie"], keep=False).to_numpy()
    if rep.any():
        u, m = df["user"].to_numpy()[rep][0], df["movie"].to_numpy()[rep][0]
        lines = (np.flatnonzero((df["user"].to_numpy() == u) & (df["movie"].to_numpy() == m)))
        a, b = (df.index[lines[:2]] + 1).tolist()
        raise DataError(f"{path}, lines {a} and {b}: user {u} rates movie {m} twice (different rating or time); "
                        "MovieLens holds one rating per (user, movie): remove one of them")
    return df.reset_index(drop=True)


def read_movies(folder: str | os.PathLike) -> pd.DataFrame:
    """movies.dat -> DataFrame[movie, title, year, genres(list)]."""
    path = Path(folder) / "movies.dat"
    df = _read_dat(path, ["movie", "title", "genres"], ["movie"])
    year = df["title"].str.extract(r"\((\d{4})\)\s*$")[0]
    df["year"] = pd.to_numeric(year, errors="coerce").astype("Int64")
    df["genres"] = df["genres"].str.split("|")
    return df[["movie", "title", "year", "genres"]]


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


def _read_rechorus_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, sep="\t", usecols=lambda c: c in ("user_id", "item_id", "time"))
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot parse as tab-separated ReChorus file ({e})") from None
    missing = {"user_id", "item_id", "time"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)} (expected a tab-separated header "
                        "with user_id, item_id, time)")
    for c in ("user_id", "item_id", "time"):
        v = pd.to_numeric(df[c], errors="coerce")
        bad = np.flatnonzero(v.isna().to_numpy())
        if bad.size:
            raise DataError(f"{path}, line {bad[0] + 2}: column {c!r} is not numeric: {df[c].iat[bad[0]]!r}")
        df[c] = v
    if len(df) == 0:
        raise DataError(f"{path}: no rows")
    if (df["user_id"] < 1).any() or (df["item_id"] < 1).any():
        raise DataError(f"{path}: ids must be >= 1 (0 is padding)")
    return pd.DataFrame({"user_id": df["user_id"].astype(np.int64), "item_id": df["item_id"].astype(np.int64),
                         "time": df["time"].astype(np.int64)})


def load_rechorus(folder: str | os.PathLike, name: str | None = None) -> Dataset:
    """Load a dataset already in ReChorus format (ids used as they are)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found")
    parts = {s: _read_rechorus_csv(folder / f"{s}.csv") for s in SPLITS}
    n_items = int(max(p.item_id.max() for p in parts.values())) + 1
    items = pd.DataFrame({"item_id": np.arange(1, n_items), "popularity": _popularity(parts["train"], n_items)})
    if (p := _item_meta_file(folder)) is not None:
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
    fingerprint = _fingerprint(Path(source) if source is not None else None, name)
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and all((out / f"{s}.parquet").exists() for s in (*SPLITS, "items")):
        man = artifacts.read_json(manifest_path)
        if man.get("source_fingerprint") == fingerprint:
            parts = {s: pd.read_parquet(out / f"{s}.parquet") for s in (*SPLITS, "items")}
            if "genres" in parts["items"].columns:
                parts["items"]["genres"] = parts["items"]["genres"].map(lambda g: list(g) if g is not None else [])
            return Dataset(man["dataset"], parts["train"], parts["dev"], parts["test"], parts["items"], man)
    ds = build_ml1m(source, cache) if name == "ml-1m" else load_rechorus(source, name)
    ds.manifest["source_fingerprint"] = fingerprint
    for s in SPLITS:
        artifacts.write_parquet(out / f"{s}.parquet", ds.split(s))
    artifacts.write_parquet(out / "items.parquet", ds.items)
    artifacts.write_json(manifest_path, ds.manifest)  # written last: it marks the cache complete
    return ds


def prepare(cfg, cache: str | os.PathLike | None = None) -> Dataset:
    """The data stage for a RunConfig: processed dataset in <run_dir>/data, built once and reused.
    The input is `resolve_source(cfg.data_source, cfg.dataset)`; downloads and extracted zips go to
    `cache` (default ~/.cache/recsae)."""
    src = resolve_source(cfg.data_source, cfg.dataset)
    return load_dataset(cfg.dataset, Path(cfg.run_dir) / "data", source=src, cache=cache)


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
