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
