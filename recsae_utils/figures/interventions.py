"""Paper figures of stages 06-07 (steering and the concept yardstick), in the report style and sizes of
`figures.concepts`; every function returns the matplotlib Figure (`reports.save_figure` writes it)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .concepts import COL_WIDTH, FULL_WIDTH, LAT_COLOR, empty_panel, wrap_text


def _pyplot():
    import matplotlib.pyplot as plt
    return plt


# ----------------------------------------------------------------------------------------------------
# Interventions (stage 06)


def dose_response(table: pd.DataFrame, label_panel: bool = True):
    """Label-share gain and concept-item share of the top 10 against the dose (beta x median ||h_u||), median
    across units with the interquartile range, one line per model (`steering.dose_table`). `label_panel`
    False (a catalogue whose labels are category ids, as Grocery's): the concept-item panel alone, since a
    label share of category ids that most items share says nothing."""
    plt = _pyplot()
    panels = (("label_gain", "label_gain_q25", "label_gain_q75", "label share gain of the top 10"),
              ("concept_after", "concept_q25", "concept_q75", "concept-item share of the top 10"))
    panels = panels if label_panel else panels[1:]
    fig, axes = plt.subplots(1, len(panels), figsize=(FULL_WIDTH if label_panel else COL_WIDTH * 1.3, 2.8),
                             squeeze=False)
    axes = axes[0]
    for ax, (mid, lo, hi, ylab) in zip(axes, panels):
        if table is None or not len(table):
            empty_panel(ax)
            continue
        for c, (name, t) in enumerate(table.groupby("model", sort=False)):
            ax.plot(t["beta"], t[mid], marker="o", color=f"C{c}", label=f"{name} ({int(t['units'].max())})")
            ax.fill_between(t["beta"], t[lo], t[hi], color=f"C{c}", alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("dose β (× median ‖h_u‖)")
        ax.set_ylabel(ylab)
    if table is not None and len(table):
        axes[0].legend(fontsize="small", title="model (units)", title_fontsize="small")
    if not label_panel:
        axes[0].set_title("label share gain not drawn: the labels are category ids", loc="left", fontsize=8)
    fig.tight_layout()
    return fig


def steering_card(card: pd.DataFrame, title: str, title_chars: int = 52):
    """One user's top 10 before and after steering one latent (`interventions.recommend` output): whole titles
    (wrapped over up to 3 lines, never cut short) with genres; items new to the list in the latent's colour."""
    plt = _pyplot()
    old = set(card["item_before"].tolist())
    rows = []
    for r, row in enumerate(card.itertuples()):
        side = []
        for item, t, g, new in ((row.item_before, row.title_before, row.genres_before, False),
                                (row.item_after, row.title_after, row.genres_after, row.item_after not in old)):
            side.append((wrap_text(f"{r + 1}. {t if t is not None else f'item {item}'}", title_chars, 3), g, new))
        rows.append(side)
    height = [0.34 * max(t.count("\n") + 1 for t, _, _ in side) + 0.36 for side in rows]   # title lines + genres
    y = np.r_[0.0, np.cumsum(height)[:-1]]
    total = float(sum(height))
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, 0.42 * total + 1.0))
    ax.set_axis_off()
    ax.set_xlim(0, 2)
    ax.set_ylim(total + 0.2, -1.0)
    ax.text(0, -0.7, "before", weight="bold")
    ax.text(1.02, -0.7, "after steering", weight="bold")
    for yy, side in zip(y, rows):
        for x, (text, g, new) in zip((0, 1.02), side):
            ax.text(x, yy, text, fontsize=7.5, color=LAT_COLOR if new else "black", va="top")
            if g:
                ax.text(x + 0.05, yy + 0.34 * (text.count("\n") + 1), wrap_text(g, 60, 1), fontsize=6, color="0.45",
                        va="top")
    ax.set_title(wrap_text(title, 110, 3), fontsize=9, loc="left")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------
# The concept yardstick (stage 07)


def yardstick_tradeoff(steer: pd.DataFrame, variant: str = "target"):
    """Median concept gain of the top 10 against the median NDCG@10 lost, one line per method through the
    matched-KL targets (`yardstick.steering_table`): what each direction buys for the harm it does."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, 3.6))
    st = steer[steer["variant"] == variant] if steer is not None and len(steer) else None
    if st is None or not len(st):
        empty_panel(ax)
        return fig
    st = st.assign(lost=1 - st["ndcg_after"] / st["ndcg_before"])
    g = st.groupby(["method", "kl_target"], sort=False)[["gain", "lost"]].median().reset_index()
    sae_like = {"sae_in", "sae_out", "sae_multi3", "sae_multi5"}
    for c, (m, t) in enumerate(g.groupby("method", sort=False)):
        style = "-" if m in sae_like else "--" if m in ("diffmean", "probe", "item_dir") else ":"
        ax.plot(t["lost"], t["gain"], style, marker="o", ms=3, color=f"C{c % 10}", label=m)
        last = t.iloc[-1]
        ax.annotate(f"KL {last['kl_target']:g}", (last["lost"], last["gain"]), fontsize=5.5, color="0.4",
                    xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("NDCG@10 lost (1 − steered / unedited, median over concepts)")
    ax.set_ylabel("concept share gain of the top 10")
    ax.axhline(0, color="0.7", lw=0.6)
    ax.legend(fontsize="x-small", ncol=2, loc="upper left", title="method (solid: SAE, dashed: supervised)",
              title_fontsize="x-small")
    fig.tight_layout()
    return fig
