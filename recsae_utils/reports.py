"""Reports: summary.json (every headline number, machine-checkable), Markdown tables and figures in
one print-friendly style (PNG for the README, PDF for papers)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import numpy as np

from . import artifacts
from .metrics import TOPK

METRIC_KEYS = [f"{m}@{k}" for k in TOPK for m in ("HR", "NDCG")]

# Reference numbers (shared/spec/protocol.md §5): ReChorus SASRec, authors' run scripts, full ranking.
REFERENCE = {
    "ml-1m": {
        "sasrec.test": {"HR@5": .1061, "NDCG@5": .0704, "HR@10": .1611, "NDCG@10": .0882, "HR@20": .2321,
                        "NDCG@20": .1062, "HR@50": .3500, "NDCG@50": .1296},
        "sasrec.dev": {"HR@5": .0851, "NDCG@5": .0564, "HR@10": .1280, "NDCG@10": .0702, "HR@20": .1971,
                       "NDCG@20": .0875, "HR@50": .3267, "NDCG@50": .1130},
        "student.sasrec.test": {"HR@5": .1100, "NDCG@5": .0717, "HR@10": .1628, "NDCG@10": .0885, "HR@20": .2303,
                                "NDCG@20": .1056, "HR@50": .3546, "NDCG@50": .1303},
        "student.recsae.test": {"HR@5": .1086, "NDCG@5": .0708, "HR@10": .1608, "NDCG@10": .0874,
                                "HR@20": .2342, "NDCG@20": .1060, "HR@50": .3563, "NDCG@50": .1300},
    },
    "grocery": {
        "sasrec.test": {"HR@5": .0454, "NDCG@5": .0295, "HR@10": .0678, "NDCG@10": .0367, "HR@20": .1046,
                        "NDCG@20": .0460, "HR@50": .1745, "NDCG@50": .0598},
        "sasrec.dev": {"HR@5": .0627, "NDCG@5": .0408},
    },
}


def summary_path(report_dir: str | Path) -> Path:
    return Path(report_dir) / "summary.json"


def update_summary(report_dir: str | Path, section: str, value) -> dict:
    """Set one top-level section of summary.json (read, replace, atomic write): each stage owns its
    sections, so re-running one stage never clobbers another's numbers."""
    path = summary_path(report_dir)
    summary = artifacts.read_json(path) if path.exists() else {}
    summary[section] = value
    artifacts.write_json(path, summary)
    return summary


def read_summary(report_dir: str | Path) -> dict:
    path = summary_path(report_dir)
    return artifacts.read_json(path) if path.exists() else {}


def metrics_table(rows: dict[str, dict], keys: Iterable[str] = METRIC_KEYS, digits: int = 4) -> str:
    """Markdown table: one row per named metric dict (missing values shown as '-')."""
    keys = list(keys)
    lines = ["| row | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, d in rows.items():
        cells = [f"{d[k]:.{digits}f}" if d and k in d and d[k] is not None else "-" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def relative_gap(ours: dict, ref: dict) -> dict[str, float]:
    return {k: (ours[k] - ref[k]) / ref[k] for k in ref if k in ours}


def mean_std(dicts: list[dict]) -> tuple[dict, dict]:
    keys = dicts[0].keys()
    arr = {k: np.array([d[k] for d in dicts], dtype=float) for k in keys}
    return ({k: float(v.mean()) for k, v in arr.items()},
            {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in arr.items()})


# ---------------------------------------------------------------------------------------------------
# Figures


def set_style() -> None:
    """One style for every figure: readable at two-column width when printed."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    mpl.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight", "pdf.fonttype": 42,
                         "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8})


def save_figure(fig, report_dir: str | Path, name: str) -> Path:
    """Write <report_dir>/figures/<name>.png and .pdf atomically; returns the PNG path."""
    out = Path(report_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        with artifacts.atomic_path(out / f"{name}.{ext}") as tmp:
            fig.savefig(tmp, format=ext)
    return out / f"{name}.png"


def plot_training_curves(histories: dict[str, list[dict]], metric: str = "NDCG@5", title: str = ""):
    """Train loss and dev metric per epoch, one line per run (e.g. per seed)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
    for name, hist in histories.items():
        ep = [r["epoch"] for r in hist]
        axes[0].plot(ep, [r["loss"] for r in hist], label=name)
        axes[1].plot(ep, [r["dev"][metric] for r in hist], label=name)
    axes[0].set(xlabel="epoch", ylabel="train loss (BPR)")
    axes[1].set(xlabel="epoch", ylabel=f"dev {metric}")
    axes[1].legend(frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


@contextmanager
def timed(store: dict, name: str):
    """Record the wall time of a block in `store[name]` (seconds)."""
    t0 = time.time()
    yield
    store[name] = round(time.time() - t0, 2)
