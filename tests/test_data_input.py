"""Input that used to pass silently (issue 15, cases 1, 2 and 9): another MovieLens zip under the same
name, a missing data folder, a truncated timestamp, a split left empty, duplicate lines, UTF-8 titles;
and the ReChorus-format reader's errors. Every input is the tiny synthetic MovieLens with a small edit."""
from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from recsae_utils import config, data, pipeline, sources, synthetic


def _zip(folder: Path, zpath: Path) -> Path:
    """Zip a GroupLens folder the way ml-1m.zip is laid out (ml-1m/<file>)."""
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"ml-1m/{f.name}")
    return zpath


def _cfg(data_dir: Path, run_root: Path) -> config.RunConfig:
    return config.load("ml-1m", "tiny", data_dir=str(data_dir), run_root=str(run_root))


# ---- case 1: the source actually used ---------------------------------------------------------------


def test_other_zip_under_the_same_name_is_used(tmp_path, capsys):
    a = synthetic.write_tiny_movielens(tmp_path / "A" / "ml-1m")
    b = synthetic.write_tiny_movielens(tmp_path / "B" / "ml-1m", n_users=60, seed=1)
    dd, cache = tmp_path / "data", tmp_path / "cache"
    dd.mkdir()
    cfg = _cfg(dd, tmp_path / "runs")
    _zip(a, dd / "ml-1m.zip")
    key_a, fp_a = pipeline.data_hash(cfg), sources.source_fingerprint(dd, "ml-1m")
    terminal = tmp_path / "progress.txt"
    config.set_progress_file(terminal)
    try:
        ds_a = data.prepare(cfg, cache=cache)
    finally:
        config.set_progress_file(None)
    assert "not the official ml-1m.zip" in capsys.readouterr().out  # a non-official archive is named
    assert "not the official ml-1m.zip" in terminal.read_text()     # on the pipeline's terminal too
    md5 = hashlib.md5((dd / "ml-1m.zip").read_bytes()).hexdigest()          # the zip's own checksum
    assert ds_a.manifest["source_fingerprint"] == fp_a == f"zip md5:{md5}"
    _zip(b, dd / "ml-1m.zip")  # same name, same cache and run folder, other data
    fp_b = sources.source_fingerprint(dd, "ml-1m")
    assert fp_b != fp_a and pipeline.data_hash(cfg) != key_a  # stage 01 reruns
    ds_b = data.prepare(cfg, cache=cache)
    assert ds_b.counts() == data.build_ml1m(b).counts() != ds_a.counts()
    assert ds_b.n_users - 1 <= 60 and ds_b.manifest["source_fingerprint"] == fp_b
    # each archive has its own extracted folder, named by its checksum
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"ml-1m-{f.split(':')[1]}" for f in (fp_a, fp_b))


def test_folder_fingerprint_follows_contents_not_mtime(tmp_path):
    folder = synthetic.write_tiny_movielens(tmp_path / "ml-1m")
    fp = sources.source_fingerprint(tmp_path, "ml-1m")
    assert fp.startswith("files sha256:")
    (folder / "README").write_text("another readme\n")  # not read by data prep
    shutil.copy(folder / "ratings.dat", tmp_path / "r")  # a copy: new mtime, same bytes
    shutil.move(tmp_path / "r", folder / "ratings.dat")
    assert sources.source_fingerprint(tmp_path, "ml-1m") == fp
    lines = (folder / "ratings.dat").read_text().splitlines()
    lines[0] = lines[0][:-1] + str((int(lines[0][-1]) + 1) % 10)  # one second later: same size
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n")
    assert sources.source_fingerprint(tmp_path, "ml-1m") != fp


def test_missing_data_dir_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(config.ConfigError, match=re.escape(f"{missing}") + ".*no such folder"):
        _cfg(missing, tmp_path / "runs")          # refused at start-up, before any stage
    from dataclasses import replace
    cfg = replace(_cfg(tmp_path, tmp_path / "runs"), data_dir=str(missing))   # and again where the data is read
    for call in (lambda: data.prepare(cfg, cache=tmp_path / "cache"), lambda: pipeline.data_hash(cfg)):
        with pytest.raises(data.DataError, match=re.escape(f"{missing}: data folder not found")):
            call()
    (tmp_path / "empty").mkdir()  # exists but holds no MovieLens: no download either
    with pytest.raises(data.DataError, match="holds neither ml-1m/ratings.dat nor ml-1m.zip"):
        data.prepare(_cfg(tmp_path / "empty", tmp_path / "runs"), cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_bad_archives(tmp_path):
    (tmp_path / "ml-1m.zip").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a valid zip archive"):
        sources.find_ml1m(tmp_path / "ml-1m.zip", tmp_path / "cache")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("ml-100k/u.data", "1\t2\t3\t4\n")
    with pytest.raises(data.DataError, match="other.zip: archive has no ratings.dat"):
        sources.find_ml1m(tmp_path / "other.zip", tmp_path / "cache")


# ---- case 2: a truncated timestamp, an empty split -----------------------------------------------------


def test_truncated_timestamp_is_an_error_with_its_line(tmp_path):
    folder = synthetic.write_tiny_movielens(tmp_path / "ml-1m")
    lines = (folder / "ratings.dat").read_text().splitlines()
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n80::34::5::101232")  # cut, no newline
    with pytest.raises(data.DataError) as e:
        data.build_ml1m(folder)
    msg = str(e.value)
    assert f"ratings.dat, line {len(lines) + 1}: timestamp 101232 (1970-01-02)" in msg
    assert "outside the plausible range" in msg and "truncated" in msg


def test_timestamp_in_the_future_or_before_1995(tmp_path):
    for ts in ("97830076", "99999999999"):
        (tmp_path / "ratings.dat").write_text(f"1::10::5::978300760\n1::11::5::{ts}\n1::12::5::978300761\n")
        with pytest.raises(data.DataError, match=f"line 2: timestamp {ts} .* outside the plausible range") as e:
            sources.read_ratings(tmp_path)
        assert "truncated" not in str(e.value)


def test_empty_split_is_an_error(tmp_path):
    folder = synthetic.write_tiny_movielens(tmp_path / "ml-1m")
    lines = (folder / "ratings.dat").read_text().splitlines()
    # every rating on one day: train takes day 0, dev and test are empty
    same_day = [re.sub(r"::\d+$", f"::{956703932 + i}", line) for i, line in enumerate(lines)]
    (folder / "ratings.dat").write_text("\n".join(same_day) + "\n")
    with pytest.raises(data.DataError, match=r"ratings.dat: the dev split is empty \(positives span days 0..0"):
        data.build_ml1m(folder)


# ---- case 9: duplicates, encodings -----------------------------------------------------------------------


def test_exact_duplicate_lines_are_dropped_with_a_count(tmp_path, tiny_ds, capsys):
    """The count is printed in the notebook and, since issue 20, also on the pipeline's terminal (its
    progress file): the note used to exist only inside the executed notebook."""
    folder = synthetic.write_tiny_movielens(tmp_path / "ml-1m")
    text = (folder / "ratings.dat").read_text()
    n = text.count("\n")
    (folder / "ratings.dat").write_text(text + text)  # the file twice
    terminal = tmp_path / "progress.txt"
    config.set_progress_file(terminal)
    try:
        ds = data.build_ml1m(folder)
    finally:
        config.set_progress_file(None)
    assert f"dropped {n:,} exact duplicate line(s) (first: line {n + 1})" in capsys.readouterr().out
    assert terminal.read_text() == f"note: {folder / 'ratings.dat'}: dropped {n:,} exact duplicate line(s) (first: line {n + 1})\n"
    assert ds.counts() == tiny_ds.counts()
    for s in data.SPLITS:  # same rows, same order as the clean file
        assert ds.split(s).equals(tiny_ds.split(s))


def test_second_rating_of_a_pair_is_an_error(tmp_path):
    folder = synthetic.write_tiny_movielens(tmp_path / "ml-1m")
    lines = (folder / "ratings.dat").read_text().splitlines()
    u, m, r, t = lines[3].split("::")
    lines.append(f"{u}::{m}::{r}::{int(t) + 60}")  # same user and movie, a minute later
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=f"ratings.dat, lines 4 and {len(lines)}: user {u} rates movie {m} twice"):
        sources.read_ratings(folder)


def test_utf8_movies_are_read_as_utf8(tmp_path, tiny_ds, capsys):
    folder = synthetic.write_tiny_movielens(tmp_path / "ml-1m")
    text = (folder / "movies.dat").read_text(encoding="latin-1")
    (folder / "movies.dat").write_text(text, encoding="utf-8")
    ds = data.build_ml1m(folder)
    assert ds.items.title.iloc[0] == "Amélie Test (2001)"  # not 'AmÃ©lie'
    assert "is UTF-8, not latin-1" in capsys.readouterr().out
    assert ds.items.title.tolist() == tiny_ds.items.title.tolist()


def test_mixed_encodings_are_refused(tmp_path):
    folder = synthetic.write_tiny_movielens(tmp_path / "ml-1m")
    raw = (folder / "movies.dat").read_bytes().splitlines(keepends=True)
    raw[5] = raw[5].replace(b"Movie", "Café".encode("latin-1"))
    raw[0] = raw[0].decode("latin-1").encode("utf-8")
    (folder / "movies.dat").write_bytes(b"".join(raw))
    with pytest.raises(data.DataError, match="movies.dat: mixed text encodings: line 1 holds UTF-8 .* line 6 is not"):
        sources.read_movies(folder)


# ---- ReChorus-format folders -------------------------------------------------------------------------------


def _rechorus(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for s, rows in (("train", "1\t1\t1\n1\t2\t2\n2\t1\t1\n2\t2\t2\n"), ("dev", "1\t1\t3\n"), ("test", "2\t2\t3\n")):
        (folder / f"{s}.csv").write_text("user_id\titem_id\ttime\n" + rows)
    return folder


def test_rechorus_missing_file_bad_meta_and_missing_folder(tmp_path):
    folder = _rechorus(tmp_path / "Grocery_and_Gourmet_Food")
    src = sources.resolve_source(tmp_path, "grocery")
    assert src == folder and data.load_dataset("grocery", tmp_path / "out", source=src).counts()["users"] == 2
    (folder / "item_meta.csv").write_text("item\ti_category\n1\t3\n")
    with pytest.raises(data.DataError, match="item_meta.csv: no item_id column"):
        data.load_rechorus(folder)
    (folder / "item_meta.csv").write_text("")
    with pytest.raises(data.DataError, match="item_meta.csv: file is empty"):
        data.load_rechorus(folder)
    (folder / "item_meta.csv").unlink()
    (folder / "dev.csv").unlink()
    with pytest.raises(data.DataError, match=re.escape(f"{folder / 'dev.csv'}: file not found")):
        data.load_rechorus(folder)
    (folder / "dev.csv").write_text("user_id\titem_id\ttime\n")
    with pytest.raises(data.DataError, match="dev.csv: no rows"):
        data.load_rechorus(folder)
    with pytest.raises(data.DataError, match="Amazon_Books: dataset folder not found"):
        sources.resolve_source(tmp_path, "Amazon_Books")
    with pytest.raises(data.DataError, match="set RECSAE_DATA_DIR"):
        sources.resolve_source(None, "grocery")
