"""Reports: summary.json (every headline number, machine-checkable), figures in one print-friendly style
(PNG for the README, PDF for papers), the Key findings and the dataset README written from the summary (its
tables come from `tables`), and `python -m recsae_utils.reports diff A B`."""
from __future__ import annotations

import re
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import artifacts
from .redaction import redact
from .tables import (SAE_NAMES, detection_table, fence, fidelity_cell, fidelity_table, fmt, interventions_section, md,
                     pct, pm, recommendation_table, sae_test_table, sae_vs_raw, sasrec_table, size_text, table,
                     variant_comparison, window_pivot, yardstick_finding, yardstick_table)


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


@contextmanager
def timed(store: dict, name: str):
    """Record the wall time of a block in `store[name]` (seconds)."""
    t0 = time.time()
    yield
    store[name] = round(time.time() - t0, 2)


# ---------------------------------------------------------------------------------------------------
# The dataset report (reports/<dataset>/README.md, sasrec.md, recsae.md), written from summary.json alone


DETECTION_AIM = 0.15        # the concepts issue's aim: SAE median balanced accuracy >= raw h_u dims + 0.15
METADATA_AIM = 0.10         # issue 13's aim for what a label names (metadata only): SAE >= raw h_u dims + 0.10
BROWSER_BUDGET_MB = 3.0     # the project's size budget for one concept browser file (issue 11: at most 3 MB)
MAX_FINDINGS = 10           # Key findings: at most this many lines
GENERIC_SHARE_AIM = 0.10    # issue 12: at most 10% generic latents among the top 5 concepts shown
GENERIC_SLOT_AIM = 0.20     # issue 13: generic latents hold at most 20% of the active slots (the default SAE's codes)


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
            line += f" (mean of {seeds} seeds {pm(sr['test_mean']['NDCG@10'], sr['test_std']['NDCG@10'])})"
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
        line = (f"{SAE_NAMES[name][0].upper() + SAE_NAMES[name][1:]} ({size_text(r['config'])}): NDCG@10 retention {fidelity_cell(f, 'retention')}"
                f"{verdict}, explained variance {h['explained_variance']:.4f}, dead latents {int(round(dead)):,} "
                f"({pct(h['dead_fraction'])}), dense {pct(h['dense_fraction'])}")
        if "noise_matched_retention" in f:
            line += f"; noise of the same size keeps retention {f['noise_matched_retention']:.4f}"
        if name == "main":
            line += stability_text(s.get("stability"))
        out.append(line + ".")
    if "main" in sae and "reference" in sae:
        v = variant_winner(sae)
        if v:
            out.append(v)
    if c:
        det = detection_finding(c)
        if det:
            out.append(det)
        if "metadata" not in (c.get("scores") or {}).get("SAE", {}):  # the window sweep (exemplars) has its
            vs, text = sae_vs_raw(c.get("detection_by_window") or [], DETECTION_AIM)  # table under Detection
            if vs:
                out.append(text)
        st = c.get("label_status") or {}
        failed = sum(v for k, v in st.items() if k != "ok")
        out.append(f"Labels ({md(c['labeler'])}): {int(st.get('ok', 0)):,} ok"
                   + (f", **{failed:,} failed** ({md(', '.join(f'{k} {v}' for k, v in st.items() if k != 'ok'))})"
                      if failed else "")
                   + f" of {int(c['live_latents']):,} live latents"
                   + (f" ({int(c['n_latents']):,} in all)" if c["n_latents"] != c["live_latents"] else "") + "; "
                   f"{c['generic_latents']} flagged generic" + generic_slots_text(c.get("generic_slot_share"))
                   + f", {c['popularity_latents']} popularity-driven"
                   + coherence_text(c.get("coherence") or {}) + ".")
        spec = c.get("specificity")
        if spec:
            views = [(v, spec[v]) for v in ("user", "movie", "explanation") if v in spec]
            titled = (s.get("data") or {}).get("manifest", {}).get("dataset", "ml-1m") == "ml-1m"
            noun = {} if titled else {"movie": "item"}             # Grocery has items, not movies
            worst = max(r["after"] for _, r in views)
            out.append(f"Specific concepts first: generic latents among the top {spec['top']} concepts shown "
                       + ", ".join(f"{noun.get(v, v)}s {pct(r['before'])} → {pct(r['after'])}" for v, r in views)
                       + (" (meets" if worst <= GENERIC_SHARE_AIM else " (**short of**")
                       + f" the ≤ {GENERIC_SHARE_AIM:.0%} aim), generic ones shown apart"
                       + ("; the top concepts shown carry {} of a recommended item's positive contribution (was {})"
                          .format(pct(spec["explanation"]["value_share_after"]),
                                  pct(spec["explanation"]["value_share_before"])) if "explanation" in spec else "")
                       + ".")
        for problem in (c.get("degraded") or [])[:2]:   # first: a degraded stage must not read as success
            out.insert(0, f"**Degraded**: {md(problem)}.")
    iv = steering_finding(s.get("interventions"))
    if iv:
        out.append(iv)
    yd = yardstick_finding(s.get("yardstick"))
    if yd:
        out.append(yd)
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


def generic_slots_text(share: float | None) -> str:
    """' (x% of active slots, meets/short of the aim)' for the labels line; '' when the run predates it."""
    if share is None:
        return ""
    return f" ({share:.1%} of slots; " + ("meets" if share <= GENERIC_SLOT_AIM else "**short of**") \
        + f" ≤ {GENERIC_SLOT_AIM:.0%})"


STABILITY_AIM = 0.5   # issue 13: at least half of the latents matched at decoder cosine >= 0.9 across SAE seeds


def stability_text(st: dict | None) -> str:
    """The default SAE line's tail: do its latents come back with another SAE seed (decoder cosine) and another
    SASRec seed (activation correlation), and do matched pairs mean the same (top items, labels)?"""
    sae = (st or {}).get("sae_seeds_mean")
    if not sae:
        return ""
    share = sae["matched_0.9"]
    text = (f"; another SAE seed: {pct(share)} of latents back at decoder cosine ≥ 0.9 "
            + ("(meets" if share >= STABILITY_AIM else "(**short of**") + f" the {STABILITY_AIM:.0%} aim; "
            f"{pct(sae['matched_0.7'])} at ≥ 0.7)")
    if sae.get("top_item_jaccard") is not None:
        text += (f", matched pairs share {sae['top_item_jaccard']:.2f} of top items, "
                 f"{pct(sae['label_agreement'])} their concept")
    sr = st.get("sasrec_seeds_mean")
    if sr:
        text += f"; another SASRec seed: {pct(sr['matched_0.9'])} at activation correlation ≥ 0.9"
    return text


DETECTED = ("SAE", "raw h_u dimensions", "random SAE")   # the models of the detection finding, SAE first


def detection_finding(c: dict) -> str:
    """One Key findings line, the result stated plainly whatever it is: median balanced accuracy and share >=
    0.8 (whole history, all firings, random negatives) of the SAE and both baselines, from what a label names
    (the metadata vocabulary) with the exemplar signature's number in brackets when the summary has both; the
    SAE's lead over the raw dimensions against METADATA_AIM (DETECTION_AIM for exemplar-only summaries) and over
    the random SAE, and whether it leads both
    baselines on both numbers."""
    sc = c.get("scores") or {}
    rows = [(n, sc[n]) for n in DETECTED if n in sc]
    if len(rows) < 2 or rows[0][0] != "SAE":
        return ""
    meta = all("metadata" in r for _, r in rows)
    head = "Detection (whole history, all firings" + ("; metadata-only labels [with exemplars])" if meta else ")")

    def val(r, key):
        return r["metadata"][key] if meta else r[key]

    def both(r, key, f):
        return f(val(r, key)) + (f" [{f(r[key])}]" if meta else "")

    def three(x):
        return f"{x:.3f}"

    med, share = "median_bal_acc_random", "share_bal_acc_ge_0.8_random"
    sae, base = rows[0][1], rows[1:]
    lead = {n: val(sae, med) - val(r, med) for n, r in base}
    raw = sc.get("raw h_u dimensions")
    aim = ""
    if raw is not None:
        goal = METADATA_AIM if meta else DETECTION_AIM
        aim = (" (meets" if lead["raw h_u dimensions"] >= goal else " (**short of**") + f" the {goal:+.2f} aim)"
    leads = all(val(sae, med) > val(r, med) and val(sae, share) > val(r, share) for _, r in base)
    short = {n: md(n) for n, _ in rows[:2]} | {"raw h_u dimensions": "raw"} if raw is not None else {}
    line = (f"{head}: median balanced accuracy " + ", ".join(f"{md(n)} {both(r, med, three)}" for n, r in rows)
            + "; SAE lead over " + ", over ".join(f"{short.get(n, md(n))} {lead[n]:+.3f}"
                                                  + (aim if n == "raw h_u dimensions" else "") for n, r in base)
            + "; share ≥ 0.8 " + ", ".join(f"{short.get(n, md(n))} {both(r, share, pct)}" for n, r in rows)
            + (" (the SAE leads both baselines)" if leads else " (**the SAE does not lead both baselines**)"))
    up = {n: (r.get("metadata_upper_half") or {}).get(med) for n, r in rows}
    if meta and all(v is not None for v in up.values()):
        line += "; upper half " + ", ".join(f"{short.get(n, md(n))} {up[n]:.3f}" for n, _ in rows)
    return line + "."


def coherence_text(coh: dict) -> str:
    """The Labels line's label-free check: the share of each model's latents whose top items share genres
    more than popularity-matched random item sets do, and the SAE's median against the random sets'."""
    rows = [(n, coh[n]) for n in DETECTED if n in coh and coh[n].get("share_above_random") is not None]
    if not rows:
        return ""
    sae = coh.get("SAE") or {}
    return ("; top-item genre coherence above popularity-matched random: "
            + ", ".join(f"{'raw' if n.startswith('raw') else md(n)} {pct(r['share_above_random'])}" for n, r in rows)
            + (f" (SAE median {sae['median']:.3f} vs {sae['median_random']:.3f})" if sae.get("median") is not None else ""))


STEERABLE_AIM = 0.5   # issue 12: at least half of the SAE's specific latents steerable


def steering_finding(iv: dict | None) -> str:
    """One Key findings line: the SAE's steerable share against the aim and against each baseline."""
    ms = (iv or {}).get("models") or {}
    sae = ms.get("SAE")
    if not sae or sae.get("steerable_share") is None:
        return ""
    share = sae["steerable_share"]
    base = [f"{md(n)} {pct(m['steerable_share'])}" for n, m in ms.items()
            if n != "SAE" and m.get("steerable_share") is not None]
    beats = all(share > m["steerable_share"] for n, m in ms.items() if n != "SAE" and m.get("steerable_share") is not None)
    gains = [f"{md(n)} {m['label_gain'].get('1', float('nan')):+.3f}" for n, m in ms.items() if m.get("label_gain")]
    return (f"Steering (β = 1 × median ‖h_u‖, 95th percentile of 100 random directions): {pct(share)} of "
            f"{sae['n_units']:,} specific SAE latents steerable, "
            + ("meets" if share >= STEERABLE_AIM else "**short of**") + f" the ≥ {STEERABLE_AIM:.0%} aim"
            + (f"; baselines {', '.join(base)}" + (" (the SAE leads)" if beats else " (**the SAE does not lead**)")
               if base else "")
            + (f"; median label-share gain {', '.join(gains)}" if gains else "") + "."
            + (" At each latent's own KL instead of norm: "
               + ", ".join(f"{md(n)} {pct(m['steerable_share_matched_kl'])}" for n, m in ms.items()
                           if m.get("steerable_share_matched_kl") is not None) + "."
               if sae.get("steerable_share_matched_kl") is not None else "") + _why(iv))


def _why(iv: dict) -> str:
    """The reason the stage measured: where the SAE's directions point in item space."""
    w, rnd = ((iv.get("models") or {}).get("SAE") or {}).get("why") or {}, iv.get("random_in_span")
    if "in_span" not in w or rnd is None:
        return ""
    return (f" Why: the SAE's directions keep {pct(w['in_span'])} of their norm in the item table's "
            f"{iv.get('span', 20)} main directions (random directions {pct(rnd)}), their median cosine with their "
            f"label's item direction is {w['label_cos']:.3f}"
            + (f", and a latent's gain follows that cosine (Spearman {w['gain_vs_label_cos_spearman']:.2f})"
               if w.get("gain_vs_label_cos_spearman") is not None else "") + ".")


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
            f"{pct(o['health']['dead_fraction'])} vs {pct(r['health']['dead_fraction'])}).")


FIGURES = [("data_overview", "Data"), ("sasrec_training", "SASRec training"),
           ("sasrec_vs_recsae", "SASRec vs RecSAE across K"), ("sae_training", "SAE fitting"),
           ("sae_firing_frequency", "Firing frequencies"), ("label_scores", "Label scores vs baselines"),
           ("concept_card", "A concept card"), ("enrichment_heatmap", "Latent × genre enrichment"),
           ("user_profile", "A user's concepts"), ("movie_profile", "An item's concepts"),
           ("dose_response", "Steering dose-response"), ("steering_card", "A steering card"),
           ("yardstick_tradeoff", "Concept gain vs NDCG@10 lost at matched KL")]

CSV_SHOWN = ("detection_by_window", "labels", "latents", "sae_vs_raw", "yardstick")  # linked from the README


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
                   f"ablation. Other sizes and variants: {_link(rd, 'recsae.md')}.\n")
        if main and "noise_matched_retention" in main["fidelity"]:
            f = main["fidelity"]
            out.append(f"**Calibration.** Gaussian noise with the default SAE's test FVU ({f.get('noise_draws', 1)} "
                       f"draws) keeps retention {fmt(f['noise_matched_retention'])} (95% of draws in "
                       f"[{fmt(f.get('noise_matched_retention_low'))}, {fmt(f.get('noise_matched_retention_high'))}]) "
                       f"and top-10 overlap {fmt(f['noise_matched_top10_overlap'])}; the SAE keeps "
                       f"{fmt(f['retention'])} and {fmt(f['top10_overlap'])}.\n")
        write_recsae_md(rd, s)
    if s.get("concepts"):
        c = s["concepts"]
        pool = (run.get("config") or {}).get("item_pool", 0)
        out.append("## Detection: can a label tell a latent's firings from other sequences?\n\n" + detection_table(s))
        meta = any("metadata" in r for r in c["scores"].values())
        out.append("Held-out (dev + test) sequences, whole history, all firings, random negatives"
                   + ("" if meta else " unless marked") + "; ≥ 5 held-out positives per latent; labels from "
                   + ("all of each latent's training firings" if not pool else f"each latent's {pool} strongest training firings")
                   + (". Metadata: what a label names (genres, decade, popularity band); exemplars: plus its items"
                      if meta else "") + ".\n")
        if write_detection_md(rd, s):
            out.append(f"By history window and on each latent's upper half (exemplar vocabulary), with example "
                       f"concepts: {_link(rd, 'detection.md')}.\n")
        expl = (c.get("specificity") or {}).get("explanations") or c.get("explanations") or []   # specific first
        if expl:
            out.append("A recommendation explained (all in " + _link(rd, "concepts/explanations.csv") + "): "
                       + md(textwrap.shorten(expl[0], 160, placeholder=" …")) + "\n")
    if (s.get("interventions") or {}).get("models"):
        out.append(interventions_section(s["interventions"]))
    if (s.get("yardstick") or {}).get("table"):
        out.append(f"## How the concepts compare\n\nMedians over concepts; all columns: {_link(rd, 'yardstick.md')}, "
                   f"per concept: {_link(rd, 'concepts/yardstick.csv')}.\n\n"
                   + yardstick_table(s["yardstick"], short=True))
    figs = [(n, cap) for n, cap in FIGURES if (rd / "figures" / f"{n}.png").exists()]
    if figs:
        out.append("## Figures\n\nAlso as PDF (`figures/<name>.pdf`).\n\n"
                   + "\n".join(f"![{md(cap)}](figures/{n}.png)" for n, cap in figs) + "\n")
    files = sorted((rd / "concepts").glob("*.csv")) if (rd / "concepts").exists() else []
    out.append("## Files\n\n"
               + ", ".join(f"[{md(p.stem)}](concepts/{p.name})" for p in files
                           if p.stem in CSV_SHOWN)
               + (f"; and {sum(p.stem not in CSV_SHOWN for p in files)} more tables in [concepts/](concepts/).\n\n"
                  if files else "") + _link(rd, "concept_browser.html") + ": the concept browser (open from disk); "
               + _link(rd, "summary.json") + ": every number above; " + _link(rd, "run.json") + ": command, config, "
               "checksums; " + _link(rd, "notebooks/", "notebooks/") + ": the executed notebooks.\n")
    if run:
        out.append("## How this was made\n\n" + fence(redact(str(run.get("command", "")))))
        out.append(f"Code `{md(str(run.get('git_commit', ''))[:12])}`, Python {md(run.get('python'))}, "
                   f"torch {md(run.get('torch'))}; input sha256 "
                   + ", ".join(f"{md(k)} {md(v)[:12]}…" for k, v in (run.get("data") or {}).items()) + ".\n")
        st = run.get("stages", [])
        if st:
            out.append("Stages (seconds; status where not run): " + ", ".join(
                f"{md(r['stage'])} {r['seconds']:.1f}" + ("" if r["status"] == "ran" else f" ({md(r['status'])})")
                for r in st) + ".\n")
    return artifacts.write_text(rd / "README.md", "\n".join(out))


def write_sasrec_md(report_dir: str | Path, s: dict | None = None) -> str:
    """sasrec.md from summary.json (notebook 02 calls it; write_report rewrites it); returns the table."""
    s = read_summary(report_dir) if s is None else s
    t = sasrec_table(s)
    artifacts.write_text(Path(report_dir) / "sasrec.md", f"# SASRec on {_dataset(s, report_dir)}\n\n{t}")
    return t


def write_detection_md(report_dir: str | Path, s: dict) -> str:
    """detection.md from summary.json: the SAE's lead over the raw dimensions by history window (the exemplar
    vocabulary's sweep) and the best-scored example concepts; '' (no file) when the run has neither."""
    rd, c = Path(report_dir), s.get("concepts") or {}
    out = []
    pivot = window_pivot(s)
    if pivot:
        vs, _ = sae_vs_raw(c["detection_by_window"], DETECTION_AIM)
        _write_csv(rd / "concepts" / "sae_vs_raw.csv", vs)
        out.append("**SAE against the raw dimensions**: the lead in median balanced accuracy by history window (w "
                   "most recent items; per-latent: chosen on training data) and positives, with the exemplar "
                   "signature (a label's items as well as what it names; the README's headline is metadata-only).\n\n"
                   + pivot)
    ex = c.get("examples") or []
    if ex:
        rows = [[e["latent"], e["name"], pct(e["freq"]), fmt(e["bal_acc_random"], 3), fmt(e["auc_random"], 3)]
                for e in ex[:2]]
        out.append(f"## {min(2, len(ex))} example concepts (best scored; all in concepts/labels.csv)\n\n"
                   + table(["latent", "label", "fires on", "bal. acc.", "AUC"], rows, "rlrrr"))
    if not out:
        return ""
    text = f"# Detection on {_dataset(s, rd)}\n\n" + "\n".join(out)
    artifacts.write_text(rd / "detection.md", text)
    return text


def write_recsae_md(report_dir: str | Path, s: dict | None = None) -> str:
    """recsae.md from summary.json: the README's recommendation table, every SAE plugged in, and every
    SAE's fidelity."""
    s = read_summary(report_dir) if s is None else s
    text = (f"# RecSAE on {_dataset(s, report_dir)}\n\n" + recommendation_table(s) + "\n" + sae_test_table(s)
            + "\n" + fidelity_table(s))
    artifacts.write_text(Path(report_dir) / "recsae.md", text)
    return text


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
