"""One table comparing the base models' SAEs on a dataset: reports/<dataset>/models.md and models.json, written
from each model's committed summary.json (SASRec's at reports/<dataset>/, another model's at
reports/<dataset>/<model>/). A model without a summary gets a row saying so; a summary missing a stage's section
says which. The pipeline writes it after a RECSAE_MODELS run; rebuild it alone with

    python -m recsae_utils.model_comparison ml-1m [--reports reports] [--models sasrec,bprmf]
"""
from __future__ import annotations

from pathlib import Path

from . import artifacts, config
from .findings import own_precision_entry
from .models import label
from .tables import fidelity_cell, fmt, md, model_name, pct, pm, table

KL = "0.3"   # the yardstick's matched disruption the table reads (a catalogue KL of 0.3)
# concept directions of the yardstick compared at KL 0.3: the SAE latent that promotes the concept (output
# side), the top 3 latents raised together, the latent its label finds (input side), and three baselines
YARDSTICK = {"sae_out": "SAE out", "sae_multi3": "SAE top-3", "sae_in": "SAE in", "diffmean": "DiffMean",
             "raw": "raw dim", "random": "random"}
# summary.json sections and the stage that writes each: a section a model's summary lacks is named in its row
SECTIONS = {"sasrec": "02", "sae": "03-04", "concepts": "05", "interventions": "06", "yardstick": "07"}


def summary_file(report_dir: str | Path, model: str) -> Path:
    """A model's summary.json, `report_dir` being the dataset's report folder (SASRec's)."""
    rd = Path(report_dir)
    return rd.parent / config.model_folder(rd.name, model) / "summary.json"


def model_row(model: str, s: dict | None, where: str = "") -> dict:
    """The compared numbers of one model's summary (None where the summary lacks them); s None: no summary."""
    row: dict = {"model": model, "label": label(model), "summary": where}
    if s is None:
        return {**row, "status": "missing"}
    missing = [sec for sec in SECTIONS if not s.get(sec)]
    sr = s.get("sasrec") or {}
    ran = model_name(s)
    row["status"] = "ok" if not missing else "partial"
    row["missing_sections"] = missing
    if sr and ran != model:
        row["status"], row["summary_model"] = "other model", ran
    seeds = len(sr.get("seeds") or {}) or (1 if sr.get("test") else 0)
    test, sd = (sr.get("test_mean"), sr.get("test_std")) if seeds > 1 else (sr.get("test"), None)
    row["seeds"] = seeds
    for k in ("NDCG@10", "HR@10"):
        row[k] = (test or {}).get(k)
        row[f"{k}_sd"] = (sd or {}).get(k)
    main = (s.get("sae") or {}).get("main") or {}
    f, h = main.get("fidelity") or {}, main.get("health") or {}
    for k in ("retention", "retention_ci_low", "retention_ci_high"):
        row[k] = f.get(k)
    row["explained_variance"] = h.get("explained_variance")
    row["dead_share"] = h.get("dead_fraction")
    c = s.get("concepts") or {}
    row["latents"] = c.get("n_latents", (main.get("config") or {}).get("n_latents"))
    row["generic_slot_share"] = c.get("generic_slot_share")
    live, generic = c.get("live_latents"), c.get("generic_latents")
    row["specific_latents"] = int(live - generic) if live is not None and generic is not None else None
    y = s.get("yardstick") or {}
    gain = (y.get("median_gain") or {}).get("target") or {}
    row[f"gain_kl{KL}"] = {m: (gain.get(m) or {}).get(KL) for m in YARDSTICK}
    row["steerable_share"] = (((s.get("interventions") or {}).get("models") or {}).get("SAE") or {}).get("steerable_share")
    probe = y.get("probing_auroc") or {}
    row["auroc_k1"] = {m: (probe.get(m) or {}).get("1") for m in ("sae", "raw")}
    lp = c.get("label_precision") or {}
    own = lp[own_precision_entry(lp, c)] if lp else {}
    row["label_precision_heldout"] = own.get("median_heldout")
    row["label_precision_heldout_ge_0.6"] = own.get("share_ge_0.6_heldout")
    return row


def comparison(report_dir: str | Path, models: tuple[str, ...] | list[str] = config.MODELS) -> dict:
    """{dataset, rows, text}: one row per model (in `models`' order) and the sentences written from them."""
    rd = Path(report_dir)
    rows = []
    for m in models:
        path = summary_file(rd, m)
        rel = path.relative_to(rd.parent).as_posix()
        rows.append(model_row(m, artifacts.read_json(path) if path.exists() else None, rel))
    return {"dataset": rd.name, "kl": float(KL), "rows": rows, "text": comparison_text(rows, rd.name)}


def _best(rows: list[dict], key, higher: bool = True) -> tuple[dict | None, list[dict]]:
    """(the row with the highest (or lowest) value of key(row) among rows that have one, the others that have one)."""
    have = [r for r in rows if key(r) is not None]
    if not have:
        return None, []
    best = (max if higher else min)(have, key=key)
    return best, [r for r in have if r is not best]


def comparison_text(rows: list[dict], dataset: str) -> list[str]:
    """2-4 sentences from the rows: which model's SAE gives the most specific and the most steerable concepts,
    at what fidelity, and which models have no summary. Every number comes from the rows."""
    out, present_or_not = [], rows
    present = [r for r in rows if r["status"] != "missing"]
    if len(present) == 1:
        r = present[0]
        out.append(f"Only {r['label']} has a summary here, so nothing is compared yet: its SAE's generic latents hold "
                   f"{pct(r.get('generic_slot_share'))} of the active slots and {pct(r.get('steerable_share'))} of its "
                   "specific latents are steerable beyond random directions.")
        rows = []
    spec, others = _best(rows, lambda r: r.get("generic_slot_share"), higher=False)
    if spec:
        prec = spec.get("label_precision_heldout")
        out.append(f"The most specific concepts come from {spec['label']}'s SAE: its generic latents hold "
                   f"{pct(spec['generic_slot_share'])} of the active slots"
                   + (f" ({', '.join(r['label'] + ' ' + pct(r['generic_slot_share']) for r in others)})" if others else "")
                   + f", it has {fmt(spec.get('specific_latents'))} specific latents"
                   + (f", and its labels' held-out precision median is {fmt(prec, 2)}" if prec is not None else "") + ".")
    steer, others = _best(rows, lambda r: r.get("steerable_share"))
    if steer:
        out.append(f"The most steerable per latent: {steer['label']}'s, with {pct(steer['steerable_share'])} of "
                   "its specific latents steerable beyond random directions"
                   + (f" ({', '.join(r['label'] + ' ' + pct(r['steerable_share']) for r in others)})" if others else "")
                   + ".")

    def out_vs_diffmean(r: dict) -> float | None:
        g = r.get(f"gain_kl{KL}") or {}
        best = max((g[m] for m in ("sae_out", "sae_multi3") if g.get(m) is not None), default=None)
        return best / g["diffmean"] if best is not None and g.get("diffmean") else None

    yard, others = _best(rows, out_vs_diffmean)
    if yard:
        out.append(f"At a catalogue KL of {KL}, the SAE's best output-side direction reaches "
                   f"{fmt(out_vs_diffmean(yard), 2)}× DiffMean's concept gain for {yard['label']}"
                   + (f" ({', '.join(r['label'] + ' ' + fmt(out_vs_diffmean(r), 2) + '×' for r in others)})"
                      if others else "") + ".")
    fid = [r for r in present if r.get("retention") is not None]
    if fid:
        out.append("Fidelity (NDCG@10 retention on test [95% interval], explained variance): "
                   + "; ".join(f"{r['label']} {fidelity_cell(r, 'retention')}, {fmt(r.get('explained_variance'))}"
                               for r in fid) + ".")
    gone = [r for r in present_or_not if r["status"] == "missing"]
    if gone:
        out.append(f"No summary for {', '.join(r['label'] for r in gone)}: not run on {dataset} (run RECSAE_MODELS="
                   f"{','.join(r['model'] for r in gone)} make all DATASETS={dataset}).")
    return out


def _model_cell(r: dict) -> str:
    """The model, with what its row lacks: no summary, sections of stages not run, another model's summary."""
    if r["status"] == "missing":
        return f"{r['label']} (no summary: {r['summary']} not found)"
    if r["status"] == "other model":
        return f"{r['label']} (its summary is {r['summary_model']}'s, not {r['label']}'s)"
    if r.get("missing_sections"):
        return f"{r['label']} (no {', '.join(f'{s} (stage {SECTIONS[s]})' for s in r['missing_sections'])})"
    return r["label"]


def _metric(r: dict, k: str) -> str:
    if r.get(k) is None:
        return "-"
    return pm(r[k], r[f"{k}_sd"]) if r.get(f"{k}_sd") is not None else fmt(r[k])


def comparison_md(cmp: dict) -> str:
    """models.md: the sentences, then the model and fidelity table and the concepts table."""
    rows = cmp["rows"]
    fid = [[_model_cell(r), r.get("seeds") or "-", _metric(r, "NDCG@10"), _metric(r, "HR@10"),
            fidelity_cell(r, "retention") if r.get("retention") is not None else "-",
            fmt(r.get("explained_variance")), pct(r.get("dead_share")), pct(r.get("generic_slot_share")),
            fmt(r.get("specific_latents")) + (f" of {r['latents']}" if r.get("latents") is not None
                                               and r.get("specific_latents") is not None else "")] for r in rows]
    con = [[r["label"]] + [fmt((r.get(f"gain_kl{KL}") or {}).get(m), 3) for m in YARDSTICK]
           + [pct(r.get("steerable_share"))] + [fmt((r.get("auroc_k1") or {}).get(m), 3) for m in ("sae", "raw")]
           + [fmt(r.get("label_precision_heldout"), 2) + (f" ({pct(r['label_precision_heldout_ge_0.6'])})"
                                                           if r.get("label_precision_heldout_ge_0.6") is not None else "")]
           for r in rows if r["status"] != "missing"]
    out = [f"# The base models compared on {md(cmp['dataset'])}\n",
           "Written by `recsae_utils.model_comparison` from each model's summary.json (`python -m "
           f"recsae_utils.model_comparison {md(cmp['dataset'])}`); do not edit by hand. The default SAE of each model.\n",
           " ".join(md(t) for t in cmp["text"]) + "\n" if cmp["text"] else "",
           "## Models and fidelity\n\nTest NDCG@10 and HR@10 of the model (mean ± sd over seeds where several); "
           "NDCG@10 retention with the SAE plugged in (test, paired-bootstrap 95% interval); explained variance; "
           "dead latents; generic latents' share of the active slots; specific latents.\n",
           table(["model", "seeds", "NDCG@10", "HR@10", "retention [95% CI]", "EV", "dead", "generic slots",
                  "specific latents"], fid)]
    if con:
        out += [f"## Concepts\n\nMedian concept gain over the yardstick's concepts at a catalogue KL of {KL} "
                "(yardstick.md), per direction; share of specific latents steerable beyond random directions; "
                "k-sparse probing AUROC at k = 1; label precision on each latent's held-out top 10 (median, and "
                "the share ≥ 0.6). For a general model (BPRMF, LightGCN) a user's dev and test instances share "
                "the vector of their training ones, so its held-out top 10 are the same users again: its "
                "precision is not held out in the sense a sequential model's is.\n",
                table(["model"] + [f"gain {v}" for v in YARDSTICK.values()]
                      + ["steerable", "AUROC k=1 SAE", "AUROC k=1 raw", "label precision held out"], con)]
    return "\n".join(o for o in out if o)


def write_comparison(report_dir: str | Path, models: tuple[str, ...] | list[str] = config.MODELS) -> tuple[Path, Path]:
    """reports/<dataset>/models.md and models.json (`report_dir` = the dataset's report folder)."""
    rd = Path(report_dir)
    cmp = comparison(rd, models)
    artifacts.write_json(rd / "models.json", cmp)
    return artifacts.write_text(rd / "models.md", comparison_md(cmp)), rd / "models.json"


def main(argv: list[str] | None = None) -> int:
    """`python -m recsae_utils.model_comparison DATASET`: (re)write the dataset's models.md and models.json from
    the committed summaries, and print the table."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m recsae_utils.model_comparison", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--reports", default="reports", help="the report root (default: reports)")
    ap.add_argument("--models", default=",".join(config.MODELS), help="comma-separated, in the table's order")
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if bad := [m for m in names if m not in config.MODELS]:
        ap.error(f"--models: unknown model {bad[0]!r}; choose from {', '.join(config.MODELS)}")
    rd = Path(args.reports) / args.dataset
    if not rd.is_dir():
        ap.error(f"{rd}: no such report folder")
    print(write_comparison(rd, names)[0].read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
