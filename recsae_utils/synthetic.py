"""A tiny synthetic MovieLens-1M in the original GroupLens file format, for tests and the tiny profile.

Users walk through the catalogue in a planted order (movie i is mostly followed by movie i + 1), so a
sequential model has something real to learn, and their ratings are spread over ~1,000 days so that
the ML_1MTOPK day split gives non-empty dev and test sets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
          "Western"]


def write_tiny_movielens(folder: str | Path, n_users: int = 80, n_movies: int = 40, seed: int = 0,
                         noise: float = 0.1) -> Path:
    """Write ratings.dat, movies.dat, users.dat, README into `folder` (latin-1, '::')."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    movie_ids = 1 + 3 * np.arange(n_movies)  # sparse original ids exercise the remapping
    t0 = 956703932  # the first ML-1M timestamp
    lines = []
    for u in range(1, n_users + 1):
        n = int(rng.integers(15, 35))
        start = int(rng.integers(0, n_movies))
        seq = (start + np.arange(n)) % n_movies
        jump = rng.random(n) < noise
        seq[jump] = rng.integers(0, n_movies, jump.sum())
        _, first = np.unique(seq, return_index=True)
        seq = seq[np.sort(first)]  # one rating per (user, movie), as in ML-1M
        day0 = int(rng.integers(0, 700))
        days = day0 + np.sort(rng.integers(0, 330, len(seq)))
        ts = t0 + days * 86400 + rng.integers(0, 86400, len(seq))
        rating = np.where(rng.random(len(seq)) < 0.85, rng.integers(4, 6, len(seq)), rng.integers(1, 4, len(seq)))
        for m, r, t in zip(movie_ids[seq], rating, np.sort(ts)):
            lines.append(f"{u}::{m}::{r}::{t}")
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    movies = []
    for i, m in enumerate(movie_ids):
        g = "|".join(sorted({GENRES[i % len(GENRES)], GENRES[(i * 7 + 3) % len(GENRES)]}))
        movies.append(f"{m}::Movie {i} ({1980 + i % 20})::{g}")
    movies[0] = f"{movie_ids[0]}::Amélie Test (2001)::Comedy|Romance"  # a latin-1 character
    (folder / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    users = [f"{u}::{'MF'[u % 2]}::25::{u % 21}::00000" for u in range(1, n_users + 1)]
    (folder / "users.dat").write_text("\n".join(users) + "\n", encoding="latin-1")
    (folder / "README").write_text("Tiny synthetic MovieLens-1M for recsae tests.\n")
    return folder


# ---------------------------------------------------------------------------------------------------
# MovieLens-shaped data at any scale, for measuring how the stages grow with the data

ML1M_USERS, ML1M_MOVIES, ML1M_RATINGS = 6_040, 3_706, 1_000_209


def _zipf_weights(n: int, rng: np.random.Generator, alpha: float = 1.2, offset: float = 5.0) -> np.ndarray:
    """Item popularity: a shifted Zipf law over a random ranking (a few blockbusters, a long tail)."""
    w = (np.arange(n) + offset) ** -alpha
    return w[rng.permutation(n)]


def _write_lines(f, cols: list[np.ndarray]) -> None:
    """Integer columns -> '::'-joined lines, by Arrow's CSV writer (':' between the columns and an empty
    column between each pair gives '::'; no per-row Python, which would dominate at 16x)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    gap = pa.nulls(len(cols[0]), pa.string())
    names, arrays = [], []
    for i, c in enumerate(cols):
        if i:
            names.append(f"_{i}")
            arrays.append(gap)
        names.append(f"c{i}")
        arrays.append(pa.array(np.asarray(c, dtype=np.int64)))
    pacsv.write_csv(pa.table(arrays, names=names), f,
                    pacsv.WriteOptions(include_header=False, delimiter=":", quoting_style="none"))


def write_scaled_movielens(folder: str | Path, scale: float = 1.0, seed: int = 0, stay: float = 0.8,
                           successor: float = 0.25, chunk_users: int = 20_000) -> Path:
    """Write a MovieLens-1M-shaped dataset `scale` times ML-1M's users and movies (so about `scale` million
    ratings) in the GroupLens file format, so that every stage reads it as it reads ML-1M.

    Shape, so that each stage meets the work it meets on real data: Zipf-like movie popularity; log-normal
    user activity (at least 20 ratings, as in ML-1M); sequential structure (a user stays in a genre cluster
    with probability `stay` per step, otherwise moves to one of their three favourite genres (30%: to any genre), and with
    probability `successor` the next movie is the "sequel" of the previous one); ~58% ratings >= 4; users
    join mostly early and rate in bursts, as in ML-1M, so the global day split leaves small dev/test sets;
    titles with years and 1-3 genres. Users are written in chunks (memory stays bounded at any scale).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_users, n_movies = max(50, round(ML1M_USERS * scale)), max(30, round(ML1M_MOVIES * scale))
    n_g = len(GENRES)
    # movies: a primary genre (its cluster) and popularity; sorted by cluster so a cluster is a contiguous range
    cluster = np.sort(rng.integers(0, n_g, n_movies))
    weight = _zipf_weights(n_movies, rng)
    starts = np.searchsorted(cluster, np.arange(n_g + 1))
    cdf = np.cumsum(weight) / weight.sum()
    lo = np.r_[0.0, cdf][starts[:-1]]
    hi = np.r_[0.0, cdf][starts[1:]]
    # the sequel of a movie: the next one in its cluster (the last wraps to the first)
    sequel = np.arange(1, n_movies + 1)
    sequel[starts[1:] - 1] = starts[:-1]
    sequel = np.where(starts[1:][cluster] > starts[:-1][cluster], sequel, np.arange(n_movies))
    movie_ids = np.arange(1, n_movies + 1) + np.cumsum(rng.random(n_movies) < 0.05)  # a few gaps, as in ML-1M

    # users: activity, three favourite genres, join day and how long they stay
    n_rated = np.clip(np.round(np.exp(rng.normal(4.64, 1.04, n_users))), 20, n_movies // 2).astype(np.int64)
    n_rated = np.minimum(n_rated, max(20, n_movies // 2))
    fav = rng.choice(n_g, size=(n_users, 3), p=np.bincount(cluster, minlength=n_g) / n_movies)
    join = np.where(rng.random(n_users) < 0.85, rng.exponential(60, n_users), rng.uniform(0, 1000, n_users))
    span = np.exp(rng.normal(0.5, 2.0, n_users))  # days; a few users keep rating until the end (dev/test)
    span = np.minimum(np.where(rng.random(n_users) < 0.04, 1030, span), 1030 - join).clip(0.01)
    t0 = 956703932  # the first ML-1M timestamp

    with open(folder / "ratings.dat", "wb") as f:
        for a in range(0, n_users, chunk_users):
            b = min(n_users, a + chunk_users)
            n = (n_rated[a:b] * 3 + 20).astype(np.int64)  # drawn with margin: repeats of a movie are dropped
            user = np.repeat(np.arange(a, b), n)
            first = np.r_[0, np.cumsum(n)[:-1]]
            new = np.zeros(len(user), bool)
            new[first] = True
            switch = new | (rng.random(len(user)) > stay)
            seg = np.cumsum(switch) - 1
            n_sw = int(switch.sum())  # a switch goes to a favourite genre, sometimes anywhere (exploration)
            seg_cluster = np.where(rng.random(n_sw) < 0.7, fav[user[switch], rng.integers(0, 3, n_sw)],
                                   rng.integers(0, n_g, n_sw))
            c = seg_cluster[seg]
            movie = np.searchsorted(cdf, lo[c] + rng.random(len(user)) * (hi[c] - lo[c]), side="right")
            movie = np.minimum(movie, n_movies - 1)
            seq = np.flatnonzero(~new & (rng.random(len(user)) < successor))
            movie[seq] = sequel[movie[seq - 1]]
            # one rating per (user, movie): keep the first, then cut each user to their drawn activity
            key = user * np.int64(n_movies) + movie
            _, keep = np.unique(key, return_index=True)
            keep = np.sort(keep)
            user, movie = user[keep], movie[keep]
            ustart = np.searchsorted(user, np.arange(a, b))
            pos = np.arange(len(user)) - ustart[user - a]
            ok = pos < n_rated[user]
            user, movie, pos = user[ok], movie[ok], pos[ok]
            cnt = np.bincount(user - a, minlength=b - a)
            frac = (pos + rng.random(len(user))) / cnt[user - a]  # increasing within a user
            ts = t0 + ((join[user] + frac * span[user]) * 86400).astype(np.int64)
            rating = np.where(rng.random(len(user)) < 0.58, rng.integers(4, 6, len(user)), rng.integers(1, 4, len(user)))
            _write_lines(f, [user + 1, movie_ids[movie], rating, ts])

    second = rng.integers(0, n_g, n_movies)
    third = np.where(rng.random(n_movies) < 0.3, rng.integers(0, n_g, n_movies), second)
    year = np.clip(np.round(2000 - rng.exponential(12, n_movies)), 1919, 2000).astype(np.int64)
    g = np.array(GENRES, dtype=object)
    genres = ["|".join(sorted(set(t))) for t in zip(g[cluster], np.where(rng.random(n_movies) < 0.5, g[second], g[cluster]), g[third])]
    with open(folder / "movies.dat", "w", encoding="latin-1") as f:
        f.write("\n".join(f"{m}::Movie {m} ({y})::{gs}" for m, y, gs in zip(movie_ids.tolist(), year.tolist(), genres)) + "\n")
    with open(folder / "users.dat", "w", encoding="latin-1") as f:
        f.write("\n".join(f"{u}::{'MF'[u % 2]}::25::{u % 21}::00000" for u in range(1, n_users + 1)) + "\n")
    (folder / "README").write_text(f"Synthetic MovieLens-1M-shaped data at scale {scale} (seed {seed}) for recsae benchmarks.\n")
    return folder
