"""Figures of stages 01-04: the data, SASRec's training, the SAE fits and the evaluation (firing
frequencies, metrics with the SAE plugged in). Each returns a matplotlib Figure for `reports.save_figure`."""
from __future__ import annotations

import numpy as np


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


def plot_data_overview(popularity, history_length, history_max: int):
    """Item popularity by rank (log-log) and the training instances' history lengths. The lengths pile up at
    the cap (most users have long histories), so the count axis is logarithmic: the short ones stay visible."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
    pop = np.sort(np.asarray(popularity))[::-1]
    axes[0].loglog(np.arange(1, len(pop) + 1), np.maximum(pop, 1))
    axes[0].set(xlabel="item rank", ylabel="train interactions", title="item popularity")
    axes[1].hist(np.asarray(history_length), bins=np.arange(0.5, history_max + 1.5), log=True)
    axes[1].set(xlabel=f"history length (capped at {history_max})", ylabel="train instances (log)",
                title="history windows")
    fig.tight_layout()
    return fig


def plot_fit_curves(fits: dict):
    """Dev FVU and dev NDCG@5 (SAE plugged in) per epoch of each fit (sae.FitResult histories)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
    for name, f in fits.items():
        ep = [r["epoch"] for r in f.history]
        axes[0].plot(ep, [r["dev"]["fvu"] for r in f.history], label=name)
        axes[1].plot(ep, [r["dev"]["NDCG@5"] for r in f.history], label=name)
    axes[0].set(xlabel="epoch", ylabel="dev FVU", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="dev NDCG@5 (plugged in)")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # epochs are whole numbers
    axes[1].legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_firing_histogram(ev: dict):
    """log10 firing frequency per latent; latents that never fired sit in their own bin, left of a gap,
    labelled 'never fired' with their count per SAE."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.5, 2.6))
    rows = {n: r for n, r in ev.items() if n != "sasrec"}
    live = np.concatenate([np.log10(np.asarray(r["freq"])[np.asarray(r["freq"]) > 0]) for r in rows.values()]
                          or [np.zeros(0)])
    bins = np.linspace(float(live.min()) if live.size else -6.0, 0.0, 40)
    dead_x = float(bins[0]) - 1.0                       # one decade left of the smallest observed frequency
    for i, (name, row) in enumerate(rows.items()):
        f = np.asarray(row["freq"])
        never = int((f <= 0).sum())
        line = ax.hist(np.log10(f[f > 0]), bins=bins, histtype="step", linewidth=1.2,
                       label=f"{name} ({never} never fired)" if never else name)[2][0]
        if never:
            ax.bar(dead_x, never, width=0.35, color=line.get_edgecolor(), alpha=0.8, align="center")
    ticks = [t for t in ax.get_xticks() if bins[0] <= t <= 0]
    ax.set_xticks([dead_x] + ticks, ["never\nfired"] + [f"{t:g}" for t in ticks])
    ax.axvline(dead_x + 0.5, color="0.6", linestyle=":", linewidth=1)
    ax.set(xlabel="log10 firing frequency (train)", ylabel="latents")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def plot_metrics_across_k(ev: dict, model: str = "SASRec"):
    """Left: test NDCG@K of the base model (`model`, its display name; ev's key is "sasrec" for every model) and
    of each SAE plugged in. Right: each SAE's test HR@K and NDCG@K as a ratio to the base model's (1 =
    unchanged), where a gap of a few percent is visible that the left panel hides."""
    import matplotlib.pyplot as plt

    from ..metrics import TOPK

    names = [n for n in ("main", "reference", "alt", "random") if n in ev]
    label = {"main": "RecSAE (default SAE)"} | {n: f"RecSAE ({n})" for n in names if n != "main"}
    color = {n: f"C{i + 1}" for i, n in enumerate(names)}
    fig, (ax_a, ax_r) = plt.subplots(1, 2, figsize=(7, 2.8))
    base = ev["sasrec"]["test"]
    ax_a.plot(TOPK, [base[f"NDCG@{k}"] for k in TOPK], color="C0", marker="o", markersize=7, linewidth=2.5,
              alpha=0.5, label=model)
    for n in names:
        ax_a.plot(TOPK, [ev[n]["test"][f"NDCG@{k}"] for k in TOPK], color=color[n], marker=".", linewidth=1,
                  label=label[n])
        for m, ls in (("NDCG", "-"), ("HR", "--")):
            ax_r.plot(TOPK, [ev[n]["test"][f"{m}@{k}"] / base[f"{m}@{k}"] for k in TOPK], color=color[n],
                      linestyle=ls, marker="o" if m == "NDCG" else "s", markersize=3, gid=f"{n}:{m}")
    ax_r.axhline(1.0, color="0.4", linestyle=":", linewidth=1, gid="parity")
    ax_a.set(xlabel="K", ylabel="test NDCG@K", xticks=list(TOPK))
    ax_r.set(xlabel="K", ylabel=f"RecSAE / {model} (test)", xticks=list(TOPK))
    from matplotlib.lines import Line2D
    handles = ax_a.get_legend_handles_labels()[0] + [Line2D([], [], color="0.3", linestyle="-", label="NDCG@K ratio"),
                                                     Line2D([], [], color="0.3", linestyle="--", label="HR@K ratio")]
    fig.legend(handles=handles, loc="lower center", ncols=3, frameon=False, fontsize=7)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig
