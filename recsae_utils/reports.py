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
    """Write <report_dir>/figures/<name>.png and .pdf atomically; returns the PNG path. The PDF carries no
    creation date, so a rerun with the same numbers rewrites byte-identical files (a clean git diff)."""
    out = Path(report_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        with artifacts.atomic_path(out / f"{name}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, metadata={"CreationDate": None} if ext == "pdf" else None)
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


# ---------------------------------------------------------------------------------------------------
# The dataset report (reports/<dataset>/README.md), written from summary.json alone


def variant_comparison(sae: dict) -> str:
    """One generated sentence: which SAE variant (Gao et al.'s "openai" or the reference code's quirks) wins
    at the same size and optimiser settings, on explained variance, NDCG@10 retention and dead latents."""
    rows = {r["config"]["variant"]: r for n, r in sae.items()
            if n in ("main", "openai", "reference") and r.get("config")}
    if set(rows) != {"openai", "reference"}:
        return ""
    o, r = rows["openai"], rows["reference"]
    crit = [("explained variance", o["health"]["explained_variance"], r["health"]["explained_variance"], True),
            ("NDCG@10 retention", o["fidelity"]["retention"], r["fidelity"]["retention"], True),
            ("dead fraction", o["health"]["dead_fraction"], r["health"]["dead_fraction"], False)]
    parts, wins = [], 0
    for name, a, b, higher in crit:
        better = (a > b) if higher else (a < b)
        wins += better
        parts.append(f"{name} {a:.4f} vs {b:.4f} ({'openai' if better else 'reference' if a != b else 'tie'})")
    winner = "openai" if wins >= 2 else "reference"
    return (f"**Variants** (same size and optimiser; openai = Gao et al. with the AuxK change of sae.py, reference = the RecSAE code's quirks): "
            + "; ".join(parts) + f". Overall: **{winner}** wins {max(wins, 3 - wins)} of 3. Retention "
            "differences inside the bootstrap interval are noise.")


def sae_vs_raw(rows: list[dict], aim: float = 0.15) -> tuple[list[dict], str]:
    """The concepts issue's criterion, read off the detection sweep: per SAE size, window and kind of
    positives, the SAE's median balanced accuracy (random negatives) minus that of the raw h_u dimensions at
    its firing rate, and both shares >= 0.8; plus one generated sentence counting the views where the SAE
    leads by at least `aim`. Rows need 'sae' (which size they belong to), 'window', 'strong_q', 'model'."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        if "sae" not in r:
            continue
        g = groups.setdefault((r["sae"], float(r.get("strong_q", 0.0)), int(r["window"])), {})
        kind = "sae" if r["model"].startswith("SAE") else "raw" if r["model"].startswith("raw") else None
        if kind:
            g[kind] = r
    out = []
    for (size, q, w), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[0][2])):
        if {"sae", "raw"} <= set(g):
            a, b = g["sae"], g["raw"]
            out.append({"sae": size, "window": w, "strong_q": q,
                        "median_sae": a["median_bal_acc_random"], "median_raw": b["median_bal_acc_random"],
                        "delta": a["median_bal_acc_random"] - b["median_bal_acc_random"],
                        "share_sae": a["share_bal_acc_ge_0.8_random"], "share_raw": b["share_bal_acc_ge_0.8_random"]})
    if not out:
        return out, ""
    hit = [r for r in out if r["delta"] >= aim]
    best = max(out, key=lambda r: r["delta"])
    ahead = sum(r["share_sae"] > r["share_raw"] for r in out)
    text = (f"The SAE leads the raw h_u dimensions by at least {aim:.2f} in median balanced accuracy in "
            f"{len(hit)} of {len(out)} views (largest lead {best['delta']:+.3f}: {best['sae']}, "
            f"{_window(best['window'])}, {_positives(best['strong_q'])}); its share of latents at >= 0.8 is the larger "
            f"in {ahead} of {len(out)}.")
    return out, text


def _window(w) -> str:
    """Window 0 in the sweep = each latent at the window it reads best (chosen on training data)."""
    return "per-latent window" if int(w) == 0 else f"w = {int(w)}"


def _positives(q: float) -> str:
    return "all firings" if q <= 0 else ("upper half" if q == 0.5 else f"top {1 - q:.0%}")


def _fidelity_cell(f: dict, key: str) -> str:
    """A fidelity value; retention gets its bootstrap interval when the summary has one."""
    lo, hi = f.get(f"{key}_ci_low"), f.get(f"{key}_ci_high")
    if lo is None or hi is None or lo != lo:
        return _fmt(f.get(key))
    return f"{_fmt(f.get(key))} [{_fmt(lo)}, {_fmt(hi)}]"


def _count(v):
    """Counts come back from JSON as floats (2048.0); show them as integers."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _fmt(v, digits=4):
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _fig(report_dir: Path, name: str, caption: str) -> str:
    return f"![{caption}](figures/{name}.png)\n\n*{caption}* ([PDF](figures/{name}.pdf))\n" \
        if (report_dir / "figures" / f"{name}.png").exists() else ""


def write_report(report_dir: str | Path) -> Path:
    """A results section in Markdown: tables, fidelity, key figures, example concepts and explanations,
    and the command/config/checksums behind them. Every number is read from summary.json."""
    rd = Path(report_dir)
    s = read_summary(rd)
    run = artifacts.read_json(rd / "run.json") if (rd / "run.json").exists() else {}
    name = rd.name
    out = [f"# Results on {name}\n",
           "Generated by `recsae_utils.reports.write_report` from `summary.json`; do not edit by hand.\n"]
    if "data" in s:
        c = s["data"]["counts"]
        out.append("## Data\n")
        out.append(f"{c['train']['interactions']:,} / {c['dev']['interactions']:,} / {c['test']['interactions']:,} "
                   f"train / dev / test interactions, {c['users']:,} users, {c['items']:,} items "
                   f"({s['data']['manifest'].get('protocol', '')}).")
        if s["data"].get("reference_match"):
            out.append(f" Same rows and order as the ReChorus files: {s['data']['reference_match']}.")
        out.append("\n")
    if "sasrec" in s:
        sr = s["sasrec"]
        rows = {"SASRec test (primary seed)": sr["test"], "SASRec dev": sr["dev"]}
        if len(sr.get("seeds", {})) > 1:
            rows[f"SASRec test, mean of {len(sr['seeds'])} seeds"] = sr["test_mean"]
            rows["SASRec test, std"] = sr["test_std"]
        ref = sr.get("reference") or {}
        for k, lab in (("sasrec.test", "reference test (authors' scripts)"), ("sasrec.dev", "reference dev")):
            if k in ref:
                rows[lab] = ref[k]
        if "recsae" in s:
            rows["RecSAE test (SAE plugged in)"] = s["recsae"]["test"]
            rows["RecSAE dev"] = s["recsae"]["dev"]
        for k, lab in (("student.sasrec.test", "original study SASRec_test"),
                       ("student.recsae.test", "original study RecSAE_test")):
            if k in ref:
                rows[lab] = ref[k]
        out.append("## Recommendation (full ranking)\n")
        out.append(metrics_table(rows))
        p = sr["seeds"][str(sr["primary_seed"])]
        out.append(f"\nSASRec: best epoch {sr['best_epoch']} of {p['epochs_run']}, "
                   f"{p['train_seconds_per_epoch']:.1f} s per training epoch, {p['eval_seconds_per_epoch']:.2f} s per "
                   f"dev evaluation, {p['seconds'] / 60:.1f} min to early stop on {run.get('machine', {}).get('cpus', '?')} CPU cores.\n")
        out.append(_fig(rd, "sasrec_training", "SASRec training loss and dev NDCG@5"))
    if "sae" in s:
        out.append("## Sparse autoencoder: reconstruction and fidelity (test split)\n")
        keys = ["explained_variance", "fvu", "nmse", "cosine", "l2_ratio", "dead_fraction", "dense_fraction"]
        fk = ["retention", "retention_dev", "metric_recovered", "top10_overlap", "catalog_kl"]
        lines = ["| SAE | latents | k | variant | " + " | ".join(keys + fk) + " |",
                 "|---|---:|---:|---|" + "---:|" * (len(keys) + len(fk))]
        for n, row in s["sae"].items():
            c = row["config"]
            lines.append(f"| {n} | {c['n_latents']} | {c['k']} | {c['variant']} | "
                         + " | ".join(_fmt(row["health"].get(k)) for k in keys) + " | "
                         + " | ".join(_fidelity_cell(row["fidelity"], k) for k in fk) + " |")
        out.append("\n".join(lines) + "\n")
        out.append("\nDead and dense fractions are counted over all training instances (the window is the whole "
                   "training set in samples). Retention and metric recovered use NDCG@10; the ablation gives "
                   "every user the mean training h_u. The interval beside retention is a paired bootstrap (95%, "
                   "2,000 resamples of the test instances): it shows how much of a gap to 1 is test-set noise. "
                   "`retention_dev` is the same ratio on the dev split (every other column is test).\n")
        mf = s["sae"].get("main", {}).get("fidelity", {})
        if "noise_matched_retention" in mf:
            out.append(f"\n**Calibration.** Isotropic Gaussian noise of the main SAE's size (same test FVU, "
                       f"{_fmt(s['sae']['main']['health'].get('fvu'))}; {mf.get('noise_draws', 1)} draws) keeps NDCG@10 "
                       f"retention {_fmt(mf['noise_matched_retention'])} on average (95% of draws in "
                       f"[{_fmt(mf.get('noise_matched_retention_low'))}, {_fmt(mf.get('noise_matched_retention_high'))}]) "
                       f"and top-10 overlap {_fmt(mf['noise_matched_top10_overlap'])}; the SAE keeps "
                       f"{_fmt(mf.get('retention'))} and {_fmt(mf.get('top10_overlap'))}. Full-catalogue ranking reacts "
                       "to any perturbation, and the draw-to-draw spread shows how noisy one retention number is.\n")
        verdict = variant_comparison(s["sae"])
        if verdict:
            out.append("\n" + verdict + "\n")
        out.append(_fig(rd, "sasrec_vs_recsae", "SASRec vs RecSAE across K (test)"))
        out.append(_fig(rd, "sae_firing_frequency", "Firing frequency of the latents (train)"))
        out.append(_fig(rd, "sae_training", "SAE fitting: dev FVU and plugged-in dev NDCG@5 per epoch"))
    if "concepts" in s:
        c = s["concepts"]
        out.append("## Concepts\n")
        out.append(f"{c['live_latents']:,} live latents of {c['n_latents']:,}; {c['generic_latents']} flagged generic, "
                   f"{c['popularity_latents']} flagged popularity. Labeler: `{c['labeler']}`.\n")
        sc = c["scores"]
        cols = ["live_latents", "n_scored", "share_bal_acc_ge_0.8_random", "median_bal_acc_random", "mean_auc_random",
                "share_bal_acc_ge_0.8_matched", "median_bal_acc_matched", "mean_auc_matched"]
        lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for n, row in sc.items():
            lines.append(f"| {n} | " + " | ".join(_fmt(_count(row.get(k)) if k in ("live_latents", "n_scored")
                                                   else row.get(k), 3) for k in cols) + " |")
        pool = (run.get("config") or {}).get("item_pool", 0)
        out.append("Offline detection score on held-out (dev + test) sequences: can the label's metadata signature "
                   "tell a latent's activating sequences from random / popularity-matched non-activating ones? Each "
                   "label, and the item tables and enrichment behind it, comes from "
                   + ("all of the latent's training firings" if not pool else f"the latent's strongest {pool} training firings")
                   + " (`item_pool`), not only its top 50 sequences, which show just the extreme tail.\n")
        out.append("\n".join(lines) + "\n")
        out.append(_fig(rd, "label_scores", "Label scores: SAE vs raw h_u dimensions vs random SAE"))
        if c.get("detection_by_window"):
            out.append("\n### Which part of the history does a latent read, and on which firings?\n")
            out.append("The same detection score when a sequence is only its w most recent history items "
                       "(dictionaries, labels and held-out scoring all rebuilt on that window; the largest w is the "
                       "whole history, the table above). Positives are either all firings (as above) or only each "
                       "latent's upper half (activation at or above the median of its own training activations; "
                       "weaker firings count on neither side). The reference judges labels on each latent's top "
                       "activations only (protocol.md §4.1). \"per latent\": each latent at the window whose training "
                       "threshold calibration scored best (ties: the longer window), so a latent that reads the last "
                       "item and one that reads the whole history are each judged on what they read; the choice "
                       "sees no held-out data. Random negatives.\n")
            wl = ["| window | positives | model | n_scored | share_bal_acc_ge_0.8 | median_bal_acc | mean_auc |",
                  "|---:|---|---|---:|---:|---:|---:|"]
            rows = sorted(c["detection_by_window"], key=lambda r: (float(r.get("strong_q", 0.0)),
                                                                 int(r["window"]) or 10 ** 9))
            for r in rows:
                pos = _positives(float(r.get("strong_q", 0.0)))
                wl.append(f"| {int(r['window']) or 'per latent'} | {pos} | {r['model']} | {int(r['n_scored'])} | "
                          f"{_fmt(r.get('share_bal_acc_ge_0.8_random'), 3)} | {_fmt(r.get('median_bal_acc_random'), 3)} | "
                          f"{_fmt(r.get('mean_auc_random'), 3)} |")
            out.append("\n".join(wl) + "\n")
            vs, text = sae_vs_raw(c["detection_by_window"])
            if vs:
                out.append("\n**SAE against the raw dimensions** (median balanced accuracy and share >= 0.8, random "
                           "negatives; raw = the signed h_u dimensions firing at the SAE's rate):\n")
                tl = ["| SAE | window | positives | median SAE | median raw | SAE - raw | share SAE | share raw |",
                      "|---|---:|---|---:|---:|---:|---:|---:|"]
                for r in vs:
                    tl.append(f"| {r['sae']} | {r['window'] or 'per latent'} | {_positives(r['strong_q'])} | {_fmt(r['median_sae'], 3)} | "
                              f"{_fmt(r['median_raw'], 3)} | {r['delta']:+.3f} | {_fmt(r['share_sae'], 3)} | "
                              f"{_fmt(r['share_raw'], 3)} |")
                out.append("\n".join(tl) + "\n\n" + text + "\n")
        out.append("\n### Ten example concepts\n")
        out.append("| latent | label | freq | AUC (random) | bal. acc. | top movies by lift |\n|---:|---|---:|---:|---:|---|")
        for e in c["examples"]:
            out.append(f"| {e['latent']} | {e['name']} | {e['freq']:.4f} | {e['auc_random']:.3f} | "
                       f"{e['bal_acc_random']:.3f} | {'; '.join(e['top_by_lift'])} |")
        out.append("")
        for n, cap in (("concept_card", "A concept card"), ("enrichment_heatmap", "Latent × genre enrichment"),
                       ("user_profile", "A user's concept profile"), ("movie_profile", "A movie's concepts")):
            out.append(_fig(rd, n, cap))
        out.append("\n### Two recommendations explained\n")
        out.append("```\n" + "\n".join(c["explanations"][:20]) + "\n```\n")
        out.append("Tables: `concepts/` (latents, latent_items, enrichment, labels, scores, explanations). "
                   "Browse them in `concept_browser.html` (open from disk).\n")
    if run:
        out.append("## How this was made\n")
        out.append(f"```\n{run['command']}\n```\n")
        out.append(f"Code version `{run.get('git_commit', '')[:12]}`, Python {run.get('python')}, torch {run.get('torch')}.\n")
        if run.get("data"):
            out.append("Input checksums (sha256): " + ", ".join(f"`{k}` {v[:16]}…" for k, v in run["data"].items()) + "\n")
        out.append("Stage times of this invocation (a stage reuses finished checkpoints, fits and caches, so "
                   "training times are the per-seed and per-fit `seconds` in `summary.json`):\n")
        out.append("| stage | status | seconds |\n|---|---|---:|")
        for r in run.get("stages", []):
            out.append(f"| {r['stage']} | {r['status']} | {r['seconds']:.1f} |")
        out.append("\nThe full config is in `run.json`; every number above is in `summary.json`.\n")
    return artifacts.write_text(rd / "README.md", "\n".join(out) + "\n")


def df_markdown(df, index: bool = True) -> str:
    """A DataFrame as a Markdown table (no extra dependency)."""
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        cells = ([str(idx)] if index else []) + [_fmt(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
