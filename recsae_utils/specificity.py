"""Specific concepts first: a per-latent specificity and the order in which a user's, a movie's and a
recommendation's concepts are shown.

A handful of generic latents (the dictionary's `generic` flag: firing on more than GENERIC_FREQ of the
sequences, or covering much of the catalogue) fire on about half of all histories with large activations,
so a plain "largest activation first" fills every view with them. Here generic latents form their own
"background" group, shown after the specific ones and never hidden; specific latents are ranked by
value x log(1 / firing frequency) (an inverse document frequency, so a rare latent at a modest value
outranks a common one at a similar value). Rows are only reordered: an explanation keeps every latent's
contribution, so background + specific + bias still add up to the score.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RULE = ("generic latents (dictionary flag) as a separate background group after the specific ones; "
        "specific latents ranked by value x log(1/firing frequency), background by value")
GROUPS = ("specific", "background")


def latent_specificity(freq: np.ndarray) -> np.ndarray:
    """log(1 / firing frequency) per latent; 0 for a latent that never fires (nothing to rank)."""
    f = np.asarray(freq, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(f > 0, -np.log(np.clip(f, 1e-300, 1.0)), 0.0)


@dataclass
class Specificity:
    """What the views need per latent: its specificity weight and whether it is generic (background)."""

    weight: np.ndarray    # (m,) log(1 / freq)
    generic: np.ndarray   # (m,) bool

    @classmethod
    def of(cls, d) -> "Specificity":
        """From a `dictionary.ConceptDictionary` (training firing frequency and its generic flag)."""
        return cls(latent_specificity(d.stats.freq), np.asarray(d.generic, bool))

    def score(self, latent: np.ndarray, value: np.ndarray) -> np.ndarray:
        """The ranking key: value x log(1/freq) for a specific latent, the value itself for a generic one
        (the two groups are never compared)."""
        latent = np.asarray(latent, dtype=np.int64)
        value = np.asarray(value, dtype=np.float64)
        return np.where(self.generic[latent], value, value * self.weight[latent])


def order(keys: list[np.ndarray], latent: np.ndarray, value: np.ndarray,
          spec: Specificity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised display order of long rows (one per key group and latent): per key group, specific
    latents first by `Specificity.score`, then the background group by value; ties by latent id.
    Returns (row order, rank within the row's group starting at 1, background flag), all in that order."""
    latent = np.asarray(latent, dtype=np.int64)
    bg = spec.generic[latent]
    o = np.lexsort((latent, -spec.score(latent, value), bg, *[np.asarray(k) for k in reversed(keys)]))
    cols = [np.asarray(k)[o] for k in keys] + [bg[o]]
    new = np.ones(len(o), bool)
    if len(o):
        new[1:] = np.any([c[1:] != c[:-1] for c in cols], axis=0)
    starts = np.flatnonzero(new)
    rank = np.arange(len(o)) - np.repeat(starts, np.diff(np.r_[starts, len(o)])) + 1
    return o, rank, bg[o]


def head_shares(key: np.ndarray, latent: np.ndarray, value: np.ndarray, generic: np.ndarray,
                spec: Specificity | None = None, top: int = 5) -> tuple[float, float]:
    """What a reader sees first: over long rows (one per key group, e.g. a user, an item or a recommended
    item, and latent), take each group's first `top` rows as shown (largest value first, or
    `order`'s specific-first order with `spec`). Returns (mean share of generic latents among them,
    mean share of the group's positive value they carry)."""
    key, latent = np.asarray(key), np.asarray(latent, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    if not len(key):
        return float("nan"), float("nan")
    o = np.lexsort((latent, -value, key)) if spec is None else order([key], latent, value, spec)[0]
    _, inv = np.unique(key[o], return_inverse=True)
    starts = np.flatnonzero(np.r_[True, inv[1:] != inv[:-1]])
    head = (np.arange(len(o)) - np.repeat(starts, np.diff(np.r_[starts, len(o)]))) < top
    gen = np.bincount(inv, weights=head & np.asarray(generic, bool)[latent[o]]) / np.bincount(inv, weights=head)
    pos = np.clip(value[o], 0, None)
    tot = np.bincount(inv, weights=pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        carried = np.bincount(inv, weights=pos * head) / tot
    return float(gen.mean()), float(np.nanmean(carried)) if np.isfinite(carried).any() else float("nan")
