"""Reports: summary.json (every headline number, machine-checkable), Markdown tables and figures in
one print-friendly style (PNG for the README, PDF for papers)."""
from __future__ import annotations

import re
import textwrap
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


@contextmanager
def timed(store: dict, name: str):
    """Record the wall time of a block in `store[name]` (seconds)."""
    t0 = time.time()
    yield
    store[name] = round(time.time() - t0, 2)


# ---------------------------------------------------------------------------------------------------
# The dataset report (reports/<dataset>/README.md, sasrec.md, recsae.md), written from summary.json alone

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
            f"{len(hit)} of {len(out)} views (largest lead {best['delta']:+.3f}: {md(best['sae'])}, "
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


DETECTION_AIM = 0.15        # the concepts issue's aim: SAE median balanced accuracy >= raw h_u dims + 0.15
BROWSER_BUDGET_MB = 3.0     # the project's size budget for one concept browser file (issue 11: at most 3 MB)
MAX_FINDINGS = 10           # Key findings: at most this many lines
GENERIC_SHARE_AIM = 0.10    # issue 12: at most 10% generic latents among the top 5 concepts shown
SIZES_SHOWN = ("main", "reference", "alt", "random")   # SAE rows of the fidelity tables, in this order
SAE_NAMES = {"main": "default SAE", "reference": "reference-code SAE", "alt": "smaller SAE", "random": "random SAE"}


_MD_SPECIAL = re.compile(r"[\\`*|~]|\](?=[(\[:])|(?<!\w)_|_(?!\w)")


def md(text) -> str:
    """A data string (title, genre, label, model name) made safe for Markdown rendered to HTML: `<` and `>`
    as entities (so no tag can open), `&` before an entity-like word as `&amp;`, Markdown markup and the
    table separator `|` backslash-escaped, and line breaks as spaces (a newline would end a table row)."""
    s = re.sub(r"\s*[\r\n\u2028\u2029]+\s*", " ", "" if text is None else str(text))
    s = re.sub(r"&(?=#?\w+;)", "&amp;", s).replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), s)


def _fence(text: str) -> str:
    """A code block whose fence is longer than any backtick run in the text, so the text cannot close it."""
    ticks = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))
    return f"{ticks}\n{text}\n{ticks}\n"


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A Markdown table; every cell goes through `md`. align: one character per column, 'l' or 'r'
    (default: first column left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(md(h) for h in header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(md(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _pm(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def _pct(v) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}%"


def _size(cfg: dict) -> str:
    return f"{int(cfg['n_latents']):,} latents, k={int(cfg['k'])}"


def recommendation_table(s: dict) -> str:
    """SASRec and RecSAE (the default SAE plugged in) on test and dev, with the reference numbers: the
    ReChorus run scripts' SASRec and the original study's SASRec / RecSAE."""
    sr, rs = s["sasrec"], s.get("recsae") or {}
    ref = sr.get("reference") or {}
    n_seeds = len(sr.get("seeds", {}))
    rows: list[list] = []

    def add(name, d):
        rows.append([name] + [_fmt(d.get(k)) for k in METRIC_KEYS])

    add(f"SASRec test (seed {sr['primary_seed']})", sr["test"])
    if n_seeds > 1:
        rows.append([f"SASRec test, mean ± std of {n_seeds} seeds"]
                    + [_pm(sr["test_mean"][k], sr["test_std"][k]) for k in METRIC_KEYS])
    if "test" in rs:
        add("RecSAE test (default SAE plugged in)", rs["test"])
    for key, name in (("sasrec.test", "reference SASRec test (authors' scripts)"),
                      ("student.sasrec.test", "original study SASRec test"),
                      ("student.recsae.test", "original study RecSAE test")):
        if key in ref:
            add(name, ref[key])
    add("SASRec dev", sr["dev"])
    if "dev" in rs:
        add("RecSAE dev", rs["dev"])
    if "sasrec.dev" in ref:
        add("reference SASRec dev", ref["sasrec.dev"])
    return table(["row"] + METRIC_KEYS, rows)


def sasrec_table(s: dict) -> str:
    """Every SASRec seed on test and dev, the mean and spread, and the reference (sasrec.md)."""
    sr = s["sasrec"]
    ref = sr.get("reference") or {}
    seeds = sr.get("seeds", {})
    rows = [[f"seed {k} test"] + [_fmt(v["test"].get(m)) for m in METRIC_KEYS] for k, v in seeds.items()]
    if len(seeds) > 1:
        rows += [["mean test"] + [_fmt(sr["test_mean"][m]) for m in METRIC_KEYS],
                 ["std test"] + [_fmt(sr["test_std"][m]) for m in METRIC_KEYS]]
    if "sasrec.test" in ref:
        rows.append(["reference test"] + [_fmt(ref["sasrec.test"].get(m)) for m in METRIC_KEYS])
    rows += [[f"seed {k} dev"] + [_fmt(v["dev"].get(m)) for m in METRIC_KEYS] for k, v in seeds.items()]
    if "sasrec.dev" in ref:
        rows.append(["reference dev"] + [_fmt(ref["sasrec.dev"].get(m)) for m in METRIC_KEYS])
    rows = [[c if c != "None" else "-" for c in r] for r in rows]
    return table(["row"] + METRIC_KEYS, rows)


def sae_test_table(s: dict) -> str:
    """Test metrics with each SAE plugged in (recsae.md)."""
    rows = [["SASRec"] + [_fmt(s["sasrec"]["test"].get(m)) for m in METRIC_KEYS]]
    rows += [[f"{SAE_NAMES.get(n, n)} ({_size(r['config'])})"] + [_fmt(r["test"].get(m)) for m in METRIC_KEYS]
             for n, r in _saes(s)]
    return table(["test"] + METRIC_KEYS, rows)


def _saes(s: dict) -> list[tuple[str, dict]]:
    sae = s.get("sae") or {}
    return [(n, sae[n]) for n in SIZES_SHOWN if n in sae] + [(n, r) for n, r in sae.items() if n not in SIZES_SHOWN]


FIDELITY_ROWS = [("explained variance", "health", "explained_variance"),
                 ("cosine", "health", "cosine"), ("L2 ratio", "health", "l2_ratio"),
                 ("dead latents", "health", "dead_fraction"), ("dense latents", "health", "dense_fraction"),
                 ("NDCG@10 retention, test [95% CI]", "fidelity", "retention"),
                 ("NDCG@10 retention, dev [95% CI]", "fidelity", "retention_dev"),
                 ("metric recovered", "fidelity", "metric_recovered"),
                 ("top-10 overlap", "fidelity", "top10_overlap"), ("catalogue KL", "fidelity", "catalog_kl")]


def fidelity_table(s: dict, names: Iterable[str] | None = None) -> str:
    """Reconstruction health and ranking fidelity, one column per SAE (default: every SAE in the summary)."""
    cols = [(n, r) for n, r in _saes(s) if names is None or n in names]
    rows = []
    for label, part, key in FIDELITY_ROWS:
        cells = []
        for _, r in cols:
            v = r.get(part, {}).get(key)
            cells.append(_pct(v) if key.endswith("_fraction") else
                         _fidelity_cell(r["fidelity"], key) if key.startswith("retention") else _fmt(v))
        rows.append([label] + cells)
    head = ["test split"] + [f"{SAE_NAMES.get(n, n)} ({_size(r['config'])}, {r['config']['variant']})" for n, r in cols]
    return table(head, rows)


def detection_table(s: dict) -> str:
    """The detection headline: every model's labels scored on held-out sequences (whole history, all
    firings), the SAE beside its baselines."""
    cols = [("n_scored", "latents scored"), ("median_bal_acc_random", "median bal. acc."),
            ("share_bal_acc_ge_0.8_random", "share ≥ 0.8"), ("mean_auc_random", "mean AUC"),
            ("median_bal_acc_matched", "median bal. acc. (pop.-matched)"),
            ("share_bal_acc_ge_0.8_matched", "share ≥ 0.8 (pop.-matched)")]
    rows = [[name] + [f"{int(r[k]):,}" if k == "n_scored" else _fmt(r.get(k), 3) for k, _ in cols]
            for name, r in s["concepts"]["scores"].items()]
    return table(["model"] + [c for _, c in cols], rows)


def window_pivot(s: dict) -> str:
    """The window sweep in one small table: per window (rows) and SAE size x kind of positives (columns),
    the SAE's lead over the raw dimensions in median balanced accuracy."""
    vs, _ = sae_vs_raw(s["concepts"].get("detection_by_window") or [])
    if not vs:
        return ""
    keys = list(dict.fromkeys((r["sae"], r["strong_q"]) for r in vs))
    windows = sorted({r["window"] for r in vs}, key=lambda w: w or 10 ** 9)
    cell = {(r["sae"], r["strong_q"], r["window"]): r["delta"] for r in vs}
    rows = [[_window(w)] + [f"{cell[(k[0], k[1], w)]:+.3f}" if (k[0], k[1], w) in cell else "-" for k in keys]
            for w in windows]
    return table(["SAE − raw"] + [f"{sz}, {_positives(q)}" for sz, q in keys], rows)


def key_findings(s: dict, report_dir: str | Path | None = None) -> list[str]:
    """At most MAX_FINDINGS lines, every number from summary.json (the browser's size from its file),
    each saying what fell short as plainly as what held."""
    out: list[str] = []
    d, sr, sae, c = s.get("data"), s.get("sasrec"), s.get("sae") or {}, s.get("concepts")
    if d:
        n = d["counts"]
        line = (f"Data: {n['train']['interactions']:,} / {n['dev']['interactions']:,} / {n['test']['interactions']:,} "
                f"train / dev / test interactions, {n['users']:,} users, {n['items']:,} items "
                f"({md(d['manifest'].get('protocol', ''))})")
        rm = d.get("reference_match") or {}
        if rm:
            bad = [k for k, v in rm.items() if not v]
            line += ("; rows and order identical to the ReChorus files" if not bad else
                     f"; **differs from the ReChorus files in {md(', '.join(bad))}**")
        out.append(line + ".")
    if sr:
        t, ref = sr["test"]["NDCG@10"], (sr.get("reference") or {}).get("sasrec.test", {}).get("NDCG@10")
        seeds = len(sr.get("seeds", {}))
        line = f"SASRec test NDCG@10 {t:.4f}"
        if seeds > 1:
            line += f" (mean of {seeds} seeds {_pm(sr['test_mean']['NDCG@10'], sr['test_std']['NDCG@10'])})"
        if ref:
            ours = sr["test_mean"]["NDCG@10"] if seeds > 1 else t
            line += f"; the authors' scripts report {ref:.4f} ({(ours - ref) / ref:+.1%} for ours)"
        out.append(line + ".")
    for name in ("main", "alt"):
        if name not in sae:
            continue
        r = sae[name]
        f, h = r["fidelity"], r["health"]
        lo, hi = f.get("retention_ci_low"), f.get("retention_ci_high")
        verdict = "" if lo is None else (" (1 inside the test-noise interval)" if lo <= 1 <= hi else
                                         " (**below 1 beyond test noise**)" if hi < 1 else " (above 1)")
        dead = h["dead_fraction"] * r["config"]["n_latents"]
        line = (f"{SAE_NAMES[name][0].upper() + SAE_NAMES[name][1:]} ({_size(r['config'])}): NDCG@10 retention {_fidelity_cell(f, 'retention')}"
                f"{verdict}, explained variance {h['explained_variance']:.4f}, dead latents {int(round(dead)):,} "
                f"({_pct(h['dead_fraction'])}), dense {_pct(h['dense_fraction'])}")
        if "noise_matched_retention" in f:
            line += f"; noise of the same size keeps retention {f['noise_matched_retention']:.4f}"
        out.append(line + ".")
    if "main" in sae and "reference" in sae:
        v = variant_winner(sae)
        if v:
            out.append(v)
    if c:
        sc = c["scores"]
        sae_row, raw, rnd = sc.get("SAE"), sc.get("raw h_u dimensions"), sc.get("random SAE")
        if sae_row and raw:
            lead = sae_row["median_bal_acc_random"] - raw["median_bal_acc_random"]
            out.append(f"Detection (whole history, all firings): default SAE labels reach median balanced accuracy "
                       f"{sae_row['median_bal_acc_random']:.3f} vs {raw['median_bal_acc_random']:.3f} for the raw h_u "
                       f"dimensions, a lead of {lead:+.3f} "
                       + ("(meets" if lead >= DETECTION_AIM else "(**short of**") + f" the {DETECTION_AIM:+.2f} aim); "
                       f"share ≥ 0.8 {_pct(sae_row['share_bal_acc_ge_0.8_random'])} vs "
                       f"{_pct(raw['share_bal_acc_ge_0.8_random'])}"
                       + (f"; random SAE {rnd['median_bal_acc_random']:.3f}" if rnd else "") + ".")
        vs, text = sae_vs_raw(c.get("detection_by_window") or [], DETECTION_AIM)
        if vs:
            out.append(text)
        st = c.get("label_status") or {}
        failed = sum(v for k, v in st.items() if k != "ok")
        out.append(f"Labels ({md(c['labeler'])}): {int(st.get('ok', 0)):,} ok"
                   + (f", **{failed:,} failed** ({md(', '.join(f'{k} {v}' for k, v in st.items() if k != 'ok'))})"
                      if failed else "")
                   + f" of {int(c['live_latents']):,} live latents ({int(c['n_latents']):,} in all); "
                   f"{c['generic_latents']} flagged generic, {c['popularity_latents']} popularity-driven.")
        spec = c.get("specificity")
        if spec:
            views = [(v, spec[v]) for v in ("user", "movie", "explanation") if v in spec]
            titled = (s.get("data") or {}).get("manifest", {}).get("dataset", "ml-1m") == "ml-1m"
            noun = {} if titled else {"movie": "item"}             # Grocery has items, not movies
            worst = max(r["after"] for _, r in views)
            out.append(f"Specific concepts first: generic latents among the top {spec['top']} concepts shown "
                       + ", ".join(f"{noun.get(v, v)}s {_pct(r['before'])} → {_pct(r['after'])}" for v, r in views)
                       + (" (meets" if worst <= GENERIC_SHARE_AIM else " (**short of**")
                       + f" the ≤ {GENERIC_SHARE_AIM:.0%} aim), generic ones shown apart as a background group"
                       + ("; the top concepts shown carry {} of a recommended item's positive contribution (was {})"
                          .format(_pct(spec["explanation"]["value_share_after"]),
                                  _pct(spec["explanation"]["value_share_before"])) if "explanation" in spec else "")
                       + ".")
        for problem in (c.get("degraded") or [])[:2]:   # first: a degraded stage must not read as success
            out.insert(0, f"**Degraded**: {md(problem)}.")
    iv = steering_finding(s.get("interventions"))
    if iv:
        out.append(iv)
    browser = Path(report_dir) / "concept_browser.html" if report_dir else None
    if browser is not None and browser.exists():
        mb = browser.stat().st_size / 1e6
        line = (f"Concept browser: {mb:.2f} MB, " + ("within" if mb <= BROWSER_BUDGET_MB else "**over**")
                + f" the {BROWSER_BUDGET_MB:g} MB budget.")
        if len(out) >= MAX_FINDINGS:   # a full list: the size goes with the last line rather than be cut
            out[MAX_FINDINGS - 1] += " " + line
        else:
            out.append(line)
    return out[:MAX_FINDINGS]


STEERABLE_AIM = 0.5   # issue 12: at least half of the SAE's specific latents steerable


def steering_finding(iv: dict | None) -> str:
    """One Key findings line: the SAE's steerable share against the aim and against each baseline."""
    ms = (iv or {}).get("models") or {}
    sae = ms.get("SAE")
    if not sae or sae.get("steerable_share") is None:
        return ""
    share = sae["steerable_share"]
    base = [f"{md(n)} {_pct(m['steerable_share'])}" for n, m in ms.items()
            if n != "SAE" and m.get("steerable_share") is not None]
    beats = all(share > m["steerable_share"] for n, m in ms.items() if n != "SAE" and m.get("steerable_share") is not None)
    gains = [f"{md(n)} {m['label_gain'].get('1', float('nan')):+.3f}" for n, m in ms.items() if m.get("label_gain")]
    return (f"Steering (β = 1 × median ‖h_u‖, 95th percentile of 100 random directions): {_pct(share)} of "
            f"{sae['n_units']:,} specific SAE latents steerable, "
            + ("meets" if share >= STEERABLE_AIM else "**short of**") + f" the ≥ {STEERABLE_AIM:.0%} aim"
            + (f"; baselines {', '.join(base)}" + (" (the SAE leads)" if beats else " (**the SAE does not lead**)")
               if base else "")
            + (f"; median label-share gain {', '.join(gains)}" if gains else "") + "." + _why(iv))


def _why(iv: dict) -> str:
    """The reason the stage measured: where the SAE's directions point in item space."""
    w, rnd = ((iv.get("models") or {}).get("SAE") or {}).get("why") or {}, iv.get("random_in_span")
    if "in_span" not in w or rnd is None:
        return ""
    return (f" Why: the SAE's directions keep {_pct(w['in_span'])} of their norm in the item table's "
            f"{iv.get('span', 20)} main directions (random directions {_pct(rnd)}), their median cosine with their "
            f"label's item direction is {w['label_cos']:.3f}"
            + (f", and a latent's gain follows that cosine (Spearman {w['gain_vs_label_cos_spearman']:.2f})"
               if w.get("gain_vs_label_cos_spearman") is not None else "") + ".")


def interventions_section(iv: dict) -> str:
    """Medians across units per dose: label-share gain, concept-item share and NDCG@10 of the steered top 10,
    then ablation and de-biasing in one sentence each."""
    betas = [f"{b:g}" for b in iv.get("betas", [])]
    rows = []
    for n, m in (iv.get("models") or {}).items():
        g = m.get("label_gain") or {}
        rows.append([f"{n} ({m['n_units']})", _pct(m.get("steerable_share"))] + [_fmt(g.get(b), 3) for b in betas]
                    + [_fmt((m.get("concept_share") or {}).get("2"), 3), _fmt((m.get("ndcg@10") or {}).get("1"), 3)])
    out = ["## Interventions: steering along a latent\n",
           "A unit's direction added with norm β × median ‖h_u‖ where it is inactive (test); medians across units of "
           "the top 10's label-share gain (labels from each unit's training firings).\n",
           table(["model (units)", "steerable"] + [f"gain β={b}" for b in betas] + ["concept share β=2", "NDCG@10 β=1"],
                 rows, "lr" + "r" * (len(betas) + 2))]
    ab = iv.get("ablation") or {}
    if ab.get("n_units"):
        out.append(f"**Ablation** of {ab['n_units']:,} SAE latents where they fire: {_fmt(ab['concept_left'], 2)} of "
                   f"{_fmt(ab['concept_in'], 2)} concept items and {_fmt(ab['label_left'], 2)} of {_fmt(ab['label_in'], 2)} "
                   f"label items leave the top 10 (median), against {_fmt(ab['concept_left_control'], 2)} and "
                   f"{_fmt(ab['label_left_control'], 2)} when the next-ranked active latent is zeroed instead.\n")
    deb = iv.get("debias") or []
    if deb:
        pts = "; ".join(f"×{d['factor']:g} {_fmt(d['popularity_pct'], 1)} / {_fmt(d['ndcg@10'], 4)}" for d in deb)
        out.append(f"**De-biasing** (the {iv.get('steering_card', {}).get('n_flagged', '?')} popularity-flagged "
                   f"latents scaled; popularity percentile of the top 10 / NDCG@10): {pts}.\n")
    return "\n".join(out)


def variant_winner(sae: dict) -> str:
    """One short line: which SAE variant wins at the same size (the long form is `variant_comparison`)."""
    text = variant_comparison(sae)
    m = re.search(r"Overall: \*\*(\w+)\*\* wins (\d) of 3", text)
    if not m:
        return ""
    o, r = sae["main"], sae["reference"]
    return (f"**Variants**: {m.group(1)} wins {m.group(2)} of 3 at the same size (openai vs reference code: "
            f"explained variance {o['health']['explained_variance']:.4f} vs {r['health']['explained_variance']:.4f}, "
            f"retention {o['fidelity']['retention']:.4f} vs {r['fidelity']['retention']:.4f}, dead "
            f"{_pct(o['health']['dead_fraction'])} vs {_pct(r['health']['dead_fraction'])}).")


FIGURES = [("data_overview", "Item popularity and history lengths (train)"),
           ("sasrec_training", "SASRec training loss and dev NDCG@5"),
           ("sasrec_vs_recsae", "SASRec vs RecSAE across K: test metrics and the SAE's ratio to SASRec"),
           ("sae_training", "SAE fitting: dev FVU and plugged-in dev NDCG@5 per epoch"),
           ("sae_firing_frequency", "Firing frequency of the latents (train)"),
           ("label_scores", "Label scores: SAE vs raw h_u dimensions vs random SAE"),
           ("concept_card", "A concept card"), ("enrichment_heatmap", "Latent × genre enrichment"),
           ("user_profile", "A user's concept profile"), ("movie_profile", "An item's concepts"),
           ("dose_response", "Steering dose-response: SAE vs baselines"),
           ("steering_card", "A user's top 10 before and after steering one latent")]

CSV_NOTES = {"latents": "firing, flags, label, window read", "labels": "names and descriptions",
             "detection_by_window": "the window sweep", "sae_vs_raw": "SAE vs raw dims per view"}


def _dataset(s: dict, report_dir) -> str:
    return md((s.get("data") or {}).get("manifest", {}).get("dataset") or Path(report_dir).name)


def _link(report_dir: Path, rel: str, text: str | None = None) -> str:
    return f"[{md(text or rel)}]({rel})" if (report_dir / rel).exists() else md(text or rel)


def _write_csv(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def write_report(report_dir: str | Path) -> Path:
    """README.md (key findings, the paper's tables, figures, links), sasrec.md and recsae.md, all from
    summary.json through the same table functions, so no second copy of a table can disagree."""
    rd = Path(report_dir)
    s = read_summary(rd)
    run = artifacts.read_json(rd / "run.json") if (rd / "run.json").exists() else {}
    name = _dataset(s, rd)
    out = [f"# Results on {name}\n",
           "Written by `recsae_utils.reports.write_report` from `summary.json`; do not edit by hand.\n"]
    findings = key_findings(s, rd)
    if findings:
        out.append("## Key findings\n\n" + "\n".join(f"- {f}" for f in findings) + "\n")
    if "sasrec" in s:
        sr = s["sasrec"]
        p = sr["seeds"].get(str(sr["primary_seed"]), {})
        out.append("## Recommendation with and without the SAE (full ranking)\n\n" + recommendation_table(s))
        if p:
            out.append(f"SASRec: best epoch {sr['best_epoch']} of {p['epochs_run']}. Every seed: "
                       f"{_link(rd, 'sasrec.md')}; every SAE plugged in: {_link(rd, 'recsae.md')}.\n")
        write_sasrec_md(rd, s)
    if s.get("sae"):
        main = s["sae"].get("main")
        out.append("## The default SAE's fidelity\n\n" + fidelity_table(s, ("main", "random")))
        out.append("Test split; dead and dense over all training instances; retention = NDCG@10 with the SAE / "
                   "without, with a paired-bootstrap 95% interval; metric recovered against the mean-user "
                   "ablation. The random SAE is the baseline; the other sizes and variants are in "
                   f"{_link(rd, 'recsae.md')}.\n")
        if main and "noise_matched_retention" in main["fidelity"]:
            f = main["fidelity"]
            out.append(f"**Calibration.** Gaussian noise with the default SAE's test FVU ({f.get('noise_draws', 1)} "
                       f"draws) keeps retention {_fmt(f['noise_matched_retention'])} (95% of draws in "
                       f"[{_fmt(f.get('noise_matched_retention_low'))}, {_fmt(f.get('noise_matched_retention_high'))}]) "
                       f"and top-10 overlap {_fmt(f['noise_matched_top10_overlap'])}; the SAE keeps "
                       f"{_fmt(f['retention'])} and {_fmt(f['top10_overlap'])}.\n")
        write_recsae_md(rd, s)
    if s.get("concepts"):
        c = s["concepts"]
        pool = (run.get("config") or {}).get("item_pool", 0)
        out.append("## Detection: can a label tell a latent's firings from other sequences?\n\n" + detection_table(s))
        out.append("Held-out (dev + test) sequences, whole history, all firings, random negatives unless marked; a "
                   "latent counts with at least 5 held-out positives. Labels and item tables come from "
                   + ("all of each latent's training firings" if not pool else f"each latent's {pool} strongest training firings")
                   + ".\n")
        pivot = window_pivot(s)
        if pivot:
            vs, _ = sae_vs_raw(c["detection_by_window"], DETECTION_AIM)
            _write_csv(rd / "concepts" / "sae_vs_raw.csv", vs)
            out.append("**SAE against the raw dimensions** by history window (w most recent items; per-latent window "
                       "chosen on training data) and positives (all firings or each latent's upper half): the lead in "
                       "median balanced accuracy.\n\n" + pivot)
        ex = c.get("examples") or []
        if ex:
            rows = [[e["latent"], e["name"], _pct(e["freq"]), _fmt(e["bal_acc_random"], 3), _fmt(e["auc_random"], 3)]
                    for e in ex[:2]]
            out.append(f"### {min(2, len(ex))} example concepts (best scored; all in "
                       f"{_link(rd, 'concepts/labels.csv')})\n\n"
                       + table(["latent", "label", "fires on", "bal. acc.", "AUC"], rows, "rlrrr"))
        expl = (c.get("specificity") or {}).get("explanations") or c.get("explanations") or []   # specific first
        if expl:
            out.append("A recommendation explained (all in " + _link(rd, "concepts/explanations.csv") + "): "
                       + md(textwrap.shorten(expl[0], 160, placeholder=" …")) + "\n")
    if (s.get("interventions") or {}).get("models"):
        out.append(interventions_section(s["interventions"]))
    figs = [(n, cap) for n, cap in FIGURES if (rd / "figures" / f"{n}.png").exists()]
    if figs:
        out.append("## Figures\n\nEach also as PDF (`figures/<name>.pdf`) for papers.\n\n"
                   + "\n".join(f"![{md(cap)}](figures/{n}.png)" for n, cap in figs) + "\n")
    files = sorted((rd / "concepts").glob("*.csv")) if (rd / "concepts").exists() else []
    out.append("## Files\n\n"
               + "; ".join(f"[{md(p.stem)}](concepts/{p.name}) ({md(CSV_NOTES[p.stem])})" for p in files
                           if p.stem in CSV_NOTES)
               + (f"; and {sum(p.stem not in CSV_NOTES for p in files)} more tables in "
                  f"[concepts/](concepts/) ({', '.join(md(p.stem) for p in files if p.stem not in CSV_NOTES)}).\n\n"
                  if files else "") + _link(rd, "concept_browser.html") + ": the concept browser (open from disk); "
               + _link(rd, "summary.json") + ": every number above; " + _link(rd, "run.json") + ": command, config, "
               "checksums; " + _link(rd, "notebooks/", "notebooks/") + ": the executed notebooks.\n")
    if run:
        out.append("## How this was made\n\n" + _fence(str(run.get("command", ""))))
        out.append(f"Code `{md(str(run.get('git_commit', ''))[:12])}`, Python {md(run.get('python'))}, "
                   f"torch {md(run.get('torch'))}; input sha256 "
                   + ", ".join(f"{md(k)} {md(v)[:12]}…" for k, v in (run.get("data") or {}).items()) + ".\n")
        st = run.get("stages", [])
        if st:
            out.append(table(["stage", "status", "seconds"],
                             [[r["stage"], r["status"], f"{r['seconds']:.1f}"] for r in st], "llr"))
    return artifacts.write_text(rd / "README.md", "\n".join(out))


def write_sasrec_md(report_dir: str | Path, s: dict | None = None) -> str:
    """sasrec.md from summary.json (notebook 02 calls it; write_report rewrites it); returns the table."""
    s = read_summary(report_dir) if s is None else s
    t = sasrec_table(s)
    artifacts.write_text(Path(report_dir) / "sasrec.md", f"# SASRec on {_dataset(s, report_dir)}\n\n{t}")
    return t


def write_recsae_md(report_dir: str | Path, s: dict | None = None) -> str:
    """recsae.md from summary.json: the README's recommendation table, every SAE plugged in, and every
    SAE's fidelity."""
    s = read_summary(report_dir) if s is None else s
    text = (f"# RecSAE on {_dataset(s, report_dir)}\n\n" + recommendation_table(s) + "\n" + sae_test_table(s)
            + "\n" + fidelity_table(s))
    artifacts.write_text(Path(report_dir) / "recsae.md", text)
    return text


def df_markdown(df, index: bool = True) -> str:
    """A DataFrame as a Markdown table (no extra dependency); cells escaped like the report's."""
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    rows = [([idx] if index else []) + [_fmt(v) if isinstance(v, float) else v for v in row] for idx, row in df.iterrows()]
    return table(cols, rows, "l" * len(cols))


# ---------------------------------------------------------------------------------------------------
# Comparing two summaries: `python -m recsae_utils.reports diff A B`


def is_timing(key: str) -> bool:
    """Keys that hold wall times (seconds, *_seconds, *_seconds_per_epoch, timing): they differ run to run."""
    return key == "timing" or "seconds" in key


def diff_summaries(a, b, path: str = "") -> list[tuple[str, object, object]]:
    """Every non-timing value that differs between two summaries, recursively: (path, a, b). Numbers compare
    exactly (NaN equals NaN); a key present on one side only shows '<missing>' on the other."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            if is_timing(str(k)):
                continue
            p = f"{path}.{k}" if path else str(k)
            out += (diff_summaries(a[k], b[k], p) if k in a and k in b else
                    [(p, a.get(k, "<missing>"), b.get(k, "<missing>"))])
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = [] if len(a) == len(b) else [(f"{path} (length)", len(a), len(b))]
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff_summaries(x, y, f"{path}[{i}]")
        return out
    nan = isinstance(a, float) and isinstance(b, float) and a != a and b != b
    same = nan or (a == b and (type(a) is type(b) or {type(a), type(b)} <= {int, float}))   # True != 1 here
    return [] if same else [(path, a, b)]


def main(argv: list[str] | None = None) -> int:
    """`diff A B`: A and B are summary.json files or report folders; prints the differences as a table and
    exits 1 if any. `write DIR`: rewrite DIR's README.md, sasrec.md and recsae.md from its summary.json."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m recsae_utils.reports")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diff", help="compare two summary.json files, ignoring timing keys")
    d.add_argument("a")
    d.add_argument("b")
    w = sub.add_parser("write", help="write the report of a report folder from its summary.json")
    w.add_argument("report_dir")
    args = ap.parse_args(argv)
    if args.cmd == "write":
        print(write_report(args.report_dir))
        return 0
    paths = [Path(p) / "summary.json" if Path(p).is_dir() else Path(p) for p in (args.a, args.b)]
    for p in paths:
        if not p.exists():
            ap.error(f"{p}: no such file")
    rows = diff_summaries(*(json.loads(p.read_text()) for p in paths))
    if not rows:
        print(f"no differences between {paths[0]} and {paths[1]} (timing keys ignored)")
        return 0
    short = lambda v: (repr(v) if not isinstance(v, (dict, list)) else f"<{type(v).__name__} of {len(v)}>")[:60]
    print(f"| key | {paths[0]} | {paths[1]} |\n|---|---|---|")
    for p, x, y in rows:
        print(f"| {p} | {short(x)} | {short(y)} |")
    print(f"\n{len(rows)} difference(s), timing keys ignored")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
