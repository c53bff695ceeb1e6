"""Raw inputs of data prep: where they are, the fingerprint that names them, and strict readers of the
GroupLens MovieLens-1M files and ReChorus csv files (every bad line is an error naming file and line).

Split from data.py so that the protocol (data.py) reads apart from file handling.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts
from .config import DATASETS, cache_dir
from .progress import note

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
SPLITS = ("train", "dev", "test")
ML1M_FILES = ("ratings.dat", "movies.dat")  # what data prep reads (users.dat and README are not used)
# Earliest plausible rating time, 1995-01-01 UTC: before MovieLens existed, and above any Unix-seconds
# time that lost a digit (a time before the year 2286 divided by 10 falls before 1975).
TIME_MIN = 788_918_400


class DataError(ValueError):
    """Bad input data: the message names the file, the line where known, and the problem."""


# ----------------------------------------------------------------------------------------------------
# Locating the input, and the fingerprint that names it


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
    return fingerprint(resolve_source(data_dir, dataset), dataset)


def fingerprint(src: Path | None, dataset: str) -> str:
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
    if (meta := item_meta_file(folder)) is not None:
        files[meta.name] = meta
    return files


def item_meta_file(folder: Path) -> Path | None:
    return next((p for p in (folder / "item_meta_all_info.csv", folder / "item_meta.csv") if p.exists()), None)


def _md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


# ----------------------------------------------------------------------------------------------------
# Reading the raw MovieLens-1M files


def find_ml1m(source: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Return a folder holding ratings.dat/movies.dat: `source` itself (a folder), `source` extracted (a
    zip), or, with no source, the official archive downloaded into `cache` (md5-checked by pooch)."""
    cache = Path(cache) if cache else cache_dir()
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
        note(f"note: {zpath} is not the official ml-1m.zip (md5 {md5}, official {ML1M_MD5}); using it as given")
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
    note(f"note: {path} is UTF-8, not latin-1 as GroupLens ships it: read as UTF-8")
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
    if set(numeric) == set(names) and raw.isascii() and (df := read_numeric_fast(raw, names)) is not None:
        return df
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


def read_numeric_fast(raw: bytes, names: list[str]) -> pd.DataFrame | None:
    """An all-integer '::' file through pandas' C parser (':' as the separator, so every second column is
    empty): 16x ML-1M's ratings.dat as Python strings would take minutes and over 10 GB. Only a file that
    is exactly clean takes this path (every line n fields of plain digits); anything else returns None and
    goes through the line-by-line reader, which names the bad line."""
    import io

    n = len(names)
    if re.search(rb"[^0-9:\n]", raw) or b":::" in raw or raw.startswith(b":") or b"\n:" in raw \
            or b":\n" in raw or raw.endswith(b":") or b"\n\n" in raw.rstrip(b"\n"):
        return None
    try:
        df = pd.read_csv(io.BytesIO(raw), sep=":", header=None, dtype=np.int64, engine="c",
                         usecols=range(0, 2 * n - 1, 2), names=range(2 * n - 1), skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError):
        return None
    if raw.count(b"::") != len(df) * (n - 1):  # lines with fewer or more fields than named
        return None
    df.columns = names
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
        note(f"note: {path}: dropped {int(dup.sum()):,} exact duplicate line(s) (first: line {np.flatnonzero(dup)[0] + 1})")
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




def read_rechorus_csv(path: Path) -> pd.DataFrame:
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
