"""Reports: summary.json (every headline number, machine-checkable), figures in one print-friendly style
(PNG for the README, PDF for papers), the Key findings and the dataset README written from the summary (its
tables come from `tables`), and `python -m recsae_utils.reports diff A B`."""
from __future__ import annotations

import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import artifacts
from .findings import (BROWSER_BUDGET_MB, DETECTION_AIM, GENERIC_SHARE_AIM, GENERIC_SLOT_AIM,  # noqa: F401
                       MAX_FINDINGS, METADATA_AIM, STABILITY_AIM, STEERABLE_AIM, coherence_text, detection_finding,
                       generic_slots_text, key_findings, label_precision_table, stability_text, steering_finding,
                       variant_winner)
from .redaction import redact
from .tables import (dataset_name, detection_table, fence, fidelity_table, fmt, headline_table,
                     interventions_section, md, model_label, recommendation_table, pct, sae_test_table, sae_vs_raw,
                     sasrec_table, table, window_pivot, yardstick_table)


# Reference numbers (docs/protocol.md, "Reference numbers"): ReChorus SASRec, authors' run scripts, full ranking.
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

# The README's size budget (the repository check warns above it): Key findings and the headline tables stay in
# the README; the fidelity details go to recsae.md and the interventions' tables to interventions.md.
README_BUDGET = 10 * 1024


# captions: {model} is the run's base model (the file names keep stage 02's "sasrec" for every model)
FIGURES = [("data_overview", "Data"), ("sasrec_training", "{model} training"),
           ("sasrec_vs_recsae", "{model} vs RecSAE across K"), ("sae_training", "SAE fitting"),
           ("sae_firing_frequency", "Firing frequencies"), ("label_scores", "Label scores vs baselines"),
           ("concept_card", "A concept card"), ("enrichment_heatmap", "Latent × genre enrichment"),
           ("user_profile", "A user's concepts"), ("movie_profile", "An item's concepts"),
           ("dose_response", "Steering dose-response"), ("steering_card", "A steering card"),
           ("yardstick_tradeoff", "Concept gain vs NDCG@10 lost at matched KL")]

CSV_SHOWN = ("detection_by_window", "labels", "latent_top_items", "latents", "sae_vs_raw", "yardstick")  # README links


def _dataset(s: dict, report_dir) -> str:
    return md(dataset_name(s) or Path(report_dir).name)


def _on(s: dict, report_dir) -> str:
    """'ml-1m' for SASRec's report (as before other models), 'grocery (BPRMF)' for another model's."""
    base = model_label(s)
    return _dataset(s, report_dir) + ("" if base == "SASRec" else f" ({md(base)})")


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
    base = model_label(s)
    out = [f"# Results on {_on(s, rd)}\n",
           "Written by `recsae_utils.reports.write_report` from `summary.json`; do not edit by hand.\n"]
    findings = key_findings(s, rd)
    if findings:
        out.append("## Key findings\n\n" + "\n".join(f"- {f}" for f in findings) + "\n")
    if "sasrec" in s:
        sr = s["sasrec"]
        p = sr["seeds"].get(str(sr["primary_seed"]), {})
        out.append("## Recommendation with and without the SAE (full ranking)\n\n" + recommendation_table(s))
        if p:
            out.append(f"{md(base)}: best epoch {sr['best_epoch']} of {p['epochs_run']}. Every seed: "
                       f"{_link(rd, 'sasrec.md')}; every SAE plugged in: {_link(rd, 'recsae.md')}.\n")
        write_sasrec_md(rd, s)
    if s.get("sae"):
        write_recsae_md(rd, s)
        out.append("## The default SAE's fidelity\n\nIts headline numbers are under Key findings. Reconstruction "
                   "health and ranking fidelity of every SAE (the random SAE beside them), with the noise "
                   f"calibration: {_link(rd, 'recsae.md')}.\n")
    if s.get("concepts"):
        c = s["concepts"]
        pool = (run.get("config") or {}).get("item_pool", 0)
        out.append("## Detection: can a label tell a latent's firings from other sequences?\n\n" + detection_table(s))
        meta = any("metadata" in r for r in c["scores"].values())
        out.append("Held-out (dev + test) sequences, whole history, all firings, random negatives"
                   + ("" if meta else " unless marked") + "; ≥ 5 held-out positives per latent; labels from "
                   + ("all of each latent's training firings" if not pool else f"each latent's {pool} strongest training firings")
                   + ("; vocabularies as under Key findings" if meta else "") + ".\n")
        if write_detection_md(rd, s):
            out.append(f"By history window and on each latent's stronger half of firings, in the exemplar vocabulary "
                       f"(not the metadata-only numbers above), with example concepts: {_link(rd, 'detection.md')}.\n")
        expl = (c.get("specificity") or {}).get("explanations") or c.get("explanations") or []   # specific first
        if expl:
            out.append("A recommendation explained (all in " + _link(rd, "concepts/explanations.csv") + "): "
                       + md(textwrap.shorten(expl[0], 160, placeholder=" …")) + "\n")
    if (s.get("interventions") or {}).get("models"):
        write_interventions_md(rd, s)
        out.append("## Interventions: steering along a latent\n\nThe steering line under Key findings; the "
                   "steering table by dose, ablation and de-biasing: " + _link(rd, "interventions.md") + ".\n")
    if (s.get("yardstick") or {}).get("table"):
        out.append(f"## How the concepts compare\n\nMedians over concepts; all columns: {_link(rd, 'yardstick.md')}, "
                   f"per concept: {_link(rd, 'concepts/yardstick.csv')}.\n\n"
                   + yardstick_table(s["yardstick"], short=True))
    figs = [(n, cap) for n, cap in FIGURES if (rd / "figures" / f"{n}.png").exists()]
    if figs:
        out.append("## Figures\n\nAlso as PDF (`figures/<name>.pdf`).\n\n"
                   + "\n".join(f"![{md(cap.format(model=base))}](figures/{n}.png)" for n, cap in figs) + "\n")
    files = sorted((rd / "concepts").glob("*.csv")) if (rd / "concepts").exists() else []
    out.append("## Files\n\n"
               + ", ".join(f"[{md(p.stem)}](concepts/{p.name})" for p in files
                           if p.stem in CSV_SHOWN)
               + (f"; and {sum(p.stem not in CSV_SHOWN for p in files)} more tables in [concepts/](concepts/).\n\n"
                  if files else "")
               + (_link(rd, "concepts/poster_views.md", "poster_views.md")
                  + ": the original study's views beside ours; "
                  if (rd / "concepts" / "poster_views.md").exists() else "")
               + (_link(rd, "models.md") + ": the base models' SAEs compared; " if (rd / "models.md").exists() else "")
               + _link(rd, "concept_browser.html") + ": the concept browser (open from disk); "
               + (_link(rd, "steering_playground.html") + ": the steering playground (open from disk); "
                  if (rd / "steering_playground.html").exists() else "")
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
    artifacts.write_text(Path(report_dir) / "sasrec.md", f"# {md(model_label(s))} on {_dataset(s, report_dir)}\n\n{t}")
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
                   "signature (a label's items as well as what it names; the README's headline is metadata-only)."
                   + _vocabulary_note(c) + "\n\n" + pivot)
    ex = c.get("examples") or []
    if ex:
        rows = [[e["latent"], e["name"], pct(e["freq"]), fmt(e["bal_acc_random"], 3), fmt(e["auc_random"], 3)]
                for e in ex[:2]]
        out.append(f"## {min(2, len(ex))} example concepts (best scored in the exemplar vocabulary; all in "
                   "concepts/labels.csv)\n\n"
                   + table(["latent", "label", "fires on", "bal. acc.", "AUC"], rows, "rlrrr"))
    prec = label_precision_table(c.get("label_precision"))
    if prec:
        out.append(prec)
    if not out:
        return ""
    text = f"# Detection on {_on(s, rd)}\n\n" + "\n".join(out)
    artifacts.write_text(rd / "detection.md", text)
    return text


def _vocabulary_note(c: dict) -> str:
    """The sentence that says the window table's vocabulary is not the headline's, with both SAE medians."""
    sae = (c.get("scores") or {}).get("SAE") or {}
    ex, meta = sae.get("median_bal_acc_random"), (sae.get("metadata") or {}).get("median_bal_acc_random")
    if ex is None or meta is None:
        return ""
    return (f" **Vocabulary:** every number below uses the exemplar vocabulary, so it is not the README's headline: "
            f"the SAE's median balanced accuracy (whole history, all firings) is {ex:.3f} with exemplars against "
            f"{meta:.3f} from what its labels name alone. A label's own words detect its latent less well than its "
            "example items do; read these leads as the exemplars', not the labels'.")


def write_recsae_md(report_dir: str | Path, s: dict | None = None) -> str:
    """recsae.md from summary.json: the README's recommendation table, every SAE plugged in, every SAE's
    fidelity and the default SAE's noise calibration (the README links here for them)."""
    s = read_summary(report_dir) if s is None else s
    text = (f"# RecSAE on {_on(s, report_dir)}\n\n" + recommendation_table(s) + "\n" + sae_test_table(s)
            + "\n## Fidelity\n\n" + fidelity_table(s)
            + "\nTest split; dead and dense over all training instances; retention = NDCG@10 with the SAE / without, "
            "with a paired-bootstrap 95% interval; metric recovered against the mean-user ablation.\n"
            + calibration_text(s))
    artifacts.write_text(Path(report_dir) / "recsae.md", text)
    return text


def calibration_text(s: dict) -> str:
    """The noise calibration paragraph of the default SAE ('' when the run predates it)."""
    f = ((s.get("sae") or {}).get("main") or {}).get("fidelity") or {}
    if "noise_matched_retention" not in f:
        return ""
    return (f"\n**Calibration.** Gaussian noise with the default SAE's test FVU ({f.get('noise_draws', 1)} "
            f"draws) keeps retention {fmt(f['noise_matched_retention'])} (95% of draws in "
            f"[{fmt(f.get('noise_matched_retention_low'))}, {fmt(f.get('noise_matched_retention_high'))}]) "
            f"and top-10 overlap {fmt(f['noise_matched_top10_overlap'])}; the SAE keeps "
            f"{fmt(f['retention'])} and {fmt(f['top10_overlap'])}.\n")


def write_interventions_md(report_dir: str | Path, s: dict) -> str:
    """interventions.md from summary.json: the steering table by dose, ablation and de-biasing (the README
    keeps the steering line of Key findings and links here)."""
    text = (f"# Interventions on {_on(s, report_dir)}: steering along a latent\n\n"
            + interventions_section(s["interventions"]))
    artifacts.write_text(Path(report_dir) / "interventions.md", text)
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


README_BLOCK = ("<!-- headline table: written by `python -m recsae_utils.reports readme` from reports/*/summary.json -->",
                "<!-- end of headline table -->")


def readme_table(readme: str | Path, report_root: str | Path, datasets: tuple[str, ...] = ("ml-1m", "grocery")) -> str:
    """README's text with its headline table rewritten from the committed summaries (`tables.headline_table`),
    between the README_BLOCK markers, so the front page never holds a number the reports do not."""
    text = Path(readme).read_text(encoding="utf-8")
    start, end = (text.find(m) for m in README_BLOCK)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no headline-table markers {README_BLOCK}")
    found = {d: read_summary(Path(report_root) / d) for d in datasets if (Path(report_root) / d / "summary.json").exists()}
    if not found:
        raise ValueError(f"{report_root}: none of {list(datasets)} has a summary.json")
    block = README_BLOCK[0] + "\n" + headline_table(found) + "\n"
    return text[:start] + block + text[end:]


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
    r = sub.add_parser("readme", help="rewrite README.md's headline table from the committed summaries")
    r.add_argument("readme", nargs="?", default="README.md")
    r.add_argument("--reports", default="reports")
    args = ap.parse_args(argv)
    if args.cmd == "readme":
        Path(args.readme).write_text(readme_table(args.readme, args.reports), encoding="utf-8")
        print(f"{args.readme}: headline table rewritten from {args.reports}/*/summary.json")
        return 0
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
