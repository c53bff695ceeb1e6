"""The paper's tables as Markdown, written from summary.json, and the escaping every data string passes
through (`md`): shared by the dataset README, sasrec.md and recsae.md (`reports`)."""
from __future__ import annotations

import re
from typing import Iterable

from .metrics import TOPK
from .config import MODEL_LABELS

METRIC_KEYS = [f"{m}@{k}" for k in TOPK for m in ("HR", "NDCG")]


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
    return ("**Variants** (same size and optimiser; openai = Gao et al. with the AuxK change of sae/losses.py, reference = the RecSAE code's quirks): "
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
    return "all firings" if q <= 0 else ("stronger half" if q == 0.5 else f"top {1 - q:.0%}")


def fidelity_cell(f: dict, key: str) -> str:
    """A fidelity value; retention gets its bootstrap interval when the summary has one."""
    lo, hi = f.get(f"{key}_ci_low"), f.get(f"{key}_ci_high")
    if lo is None or hi is None or lo != lo:
        return fmt(f.get(key))
    return f"{fmt(f.get(key))} [{fmt(lo)}, {fmt(hi)}]"


def _count(v):
    """Counts come back from JSON as floats (2048.0); show them as integers."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def fmt(v, digits=4):
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


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


def fence(text: str) -> str:
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


def pm(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def pct(v) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}%"


def model_name(s: dict) -> str:
    """The base model a summary's run trained: its `sasrec` section (stage 02's, whatever the model) records the
    run's config; a summary written before other models existed has no `model` there and was SASRec's."""
    return ((s.get("sasrec") or {}).get("config") or {}).get("model") or "sasrec"


def model_label(s: dict) -> str:
    """The display name of the summary's base model ('SASRec', 'BPRMF', ...), for every report text about it."""
    name = model_name(s)
    return MODEL_LABELS.get(name, name)


def dataset_name(s: dict) -> str | None:
    """The summary's dataset: stage 01's manifest, else the run's config (a model's run that reused stage 01
    has no `data` section); None when neither says."""
    return ((s.get("data") or {}).get("manifest") or {}).get("dataset") \
        or ((s.get("sasrec") or {}).get("config") or {}).get("dataset")


def size_text(cfg: dict) -> str:
    return f"{int(cfg['n_latents']):,} latents, k={int(cfg['k'])}"


def recommendation_table(s: dict) -> str:
    """The base model (named by its label) and RecSAE (the default SAE plugged in) on test and dev, with the
    reference numbers (SASRec's only): the ReChorus run scripts' SASRec and the original study's SASRec / RecSAE."""
    sr, rs, base = s["sasrec"], s.get("recsae") or {}, model_label(s)
    ref = sr.get("reference") or {}
    n_seeds = len(sr.get("seeds", {}))
    rows: list[list] = []

    def add(name, d):
        rows.append([name] + [fmt(d.get(k)) for k in METRIC_KEYS])

    add(f"{base} test (seed {sr['primary_seed']})", sr["test"])
    if n_seeds > 1:
        rows.append([f"{base} test, mean ± std of {n_seeds} seeds"]
                    + [pm(sr["test_mean"][k], sr["test_std"][k]) for k in METRIC_KEYS])
    if "test" in rs:
        add("RecSAE test (default SAE plugged in)", rs["test"])
    for key, name in (("sasrec.test", "reference SASRec test (authors' scripts)"),
                      ("student.sasrec.test", "original study SASRec test"),
                      ("student.recsae.test", "original study RecSAE test")):
        if key in ref:
            add(name, ref[key])
    add(f"{base} dev", sr["dev"])
    if "dev" in rs:
        add("RecSAE dev", rs["dev"])
    if "sasrec.dev" in ref:
        add("reference SASRec dev", ref["sasrec.dev"])
    return table(["row"] + METRIC_KEYS, rows)


def headline_table(summaries: dict[str, dict]) -> str:
    """The front page's table: per dataset, the base model (SASRec on the front page) and the default SAE
    plugged in (test, full ranking) and what the SAE keeps of NDCG@10 (with its paired-bootstrap interval) and
    of h_u's variance. Summaries of several models: 'base model' heads the columns and each row names its own."""
    rows = []
    labels = {model_label(s) for s in summaries.values()}
    base = labels.pop() if len(labels) == 1 else "base model"
    for name, s in summaries.items():
        sr, rs, main = s["sasrec"]["test"], (s.get("recsae") or {}).get("test", {}), s["sae"]["main"]
        name = name if base != "base model" else f"{name} ({model_label(s)})"
        rows.append([name] + [fmt(sr.get(k)) for k in ("HR@10", "NDCG@10")] + [fmt(rs.get(k)) for k in ("HR@10", "NDCG@10")]
                    + [fidelity_cell(main["fidelity"], "retention"), fmt(main["health"]["explained_variance"])])
    return table(["dataset", f"{base} HR@10", f"{base} NDCG@10", "with SAE HR@10", "with SAE NDCG@10",
                  "NDCG@10 retention [95% CI]", "explained variance"], rows)


def sasrec_table(s: dict) -> str:
    """Every seed of the base model on test and dev, the mean and spread, and the reference (sasrec.md)."""
    sr = s["sasrec"]
    ref = sr.get("reference") or {}
    seeds = sr.get("seeds", {})
    rows = [[f"seed {k} test"] + [fmt(v["test"].get(m)) for m in METRIC_KEYS] for k, v in seeds.items()]
    if len(seeds) > 1:
        rows += [["mean test"] + [fmt(sr["test_mean"][m]) for m in METRIC_KEYS],
                 ["std test"] + [fmt(sr["test_std"][m]) for m in METRIC_KEYS]]
    if "sasrec.test" in ref:
        rows.append(["reference test"] + [fmt(ref["sasrec.test"].get(m)) for m in METRIC_KEYS])
    rows += [[f"seed {k} dev"] + [fmt(v["dev"].get(m)) for m in METRIC_KEYS] for k, v in seeds.items()]
    if "sasrec.dev" in ref:
        rows.append(["reference dev"] + [fmt(ref["sasrec.dev"].get(m)) for m in METRIC_KEYS])
    rows = [[c if c != "None" else "-" for c in r] for r in rows]
    return table(["row"] + METRIC_KEYS, rows)


def sae_test_table(s: dict) -> str:
    """Test metrics with each SAE plugged in (recsae.md)."""
    rows = [[model_label(s)] + [fmt(s["sasrec"]["test"].get(m)) for m in METRIC_KEYS]]
    rows += [[f"{SAE_NAMES.get(n, n)} ({size_text(r['config'])})"] + [fmt(r["test"].get(m)) for m in METRIC_KEYS]
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
                 ("top-10 overlap", "fidelity", "top10_overlap"),
                 ("ranking shift (KL over the catalogue)", "fidelity", "catalog_kl")]


def fidelity_table(s: dict, names: Iterable[str] | None = None) -> str:
    """Reconstruction health and ranking fidelity, one column per SAE (default: every SAE in the summary)."""
    cols = [(n, r) for n, r in _saes(s) if names is None or n in names]
    rows = []
    for label, part, key in FIDELITY_ROWS:
        cells = []
        for _, r in cols:
            v = r.get(part, {}).get(key)
            cells.append(pct(v) if key.endswith("_fraction") else
                         fidelity_cell(r["fidelity"], key) if key.startswith("retention") else fmt(v))
        rows.append([label] + cells)
    head = ["test split"] + [f"{SAE_NAMES.get(n, n)} ({size_text(r['config'])}, {r['config']['variant']})" for n, r in cols]
    return table(head, rows)


def detection_table(s: dict) -> str:
    """The detection headline: every model's labels scored on held-out sequences (whole history, all
    firings), the SAE beside its baselines; with the metadata vocabulary (what a label names) first when the
    summary has it, the exemplar signature beside it."""
    sc = s["concepts"]["scores"]
    meta = bool(sc) and all("metadata" in r for r in sc.values())
    cols = [("n_scored", "latents scored")]
    if meta:
        cols += [("metadata.median_bal_acc_random", "metadata median"),
                 ("metadata.share_bal_acc_ge_0.8_random", "metadata share ≥ 0.8"),
                 ("median_bal_acc_random", "exemplars median"), ("share_bal_acc_ge_0.8_random", "exemplars share ≥ 0.8")]
    else:
        cols += [("median_bal_acc_random", "median bal. acc."), ("share_bal_acc_ge_0.8_random", "share ≥ 0.8"),
                 ("mean_auc_random", "mean AUC"), ("median_bal_acc_matched", "median bal. acc. (pop.-matched)"),
                 ("share_bal_acc_ge_0.8_matched", "share ≥ 0.8 (pop.-matched)")]

    def get(r, k):
        return r["metadata"].get(k[9:]) if k.startswith("metadata.") else r.get(k)

    rows = [[name] + [f"{int(r[k]):,}" if k == "n_scored" else fmt(get(r, k), 3) for k, _ in cols]
            for name, r in sc.items()]
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


def interventions_section(iv: dict) -> str:
    """Medians across units per dose: label-share gain, concept-item share and NDCG@10 of the steered top 10,
    then ablation and de-biasing in one sentence each."""
    betas = [f"{b:g}" for b in iv.get("betas", []) if b >= 0.5]   # the smaller doses: dose_response figure
    rows = []
    for n, m in (iv.get("models") or {}).items():
        g = m.get("label_gain") or {}
        rows.append([f"{n} ({m['n_units']})", pct(m.get("steerable_share")), pct(m.get("steerable_share_matched_kl"))]
                    + [fmt(g.get(b), 3) for b in betas]
                    + [fmt((m.get("concept_share") or {}).get("2"), 3), fmt((m.get("ndcg@10") or {}).get("1"), 3)])
    out = ["A unit's direction added with norm β × median ‖h_u‖ where it is inactive (test); median label-share gain "
           "of the top 10.\n",
           table(["model (units)", "steerable", "at matched KL"] + [f"gain β={b}" for b in betas]
                 + ["concept share β=2", "NDCG@10 β=1"], rows, "lrr" + "r" * (len(betas) + 2))]
    ab = iv.get("ablation") or {}
    if ab.get("n_units"):
        out.append(f"**Ablation** of {ab['n_units']:,} SAE latents where they fire: {fmt(ab['concept_left'], 2)} of "
                   f"{fmt(ab['concept_in'], 2)} concept items and {fmt(ab['label_left'], 2)} of {fmt(ab['label_in'], 2)} "
                   f"label items leave the top 10 (median), against {fmt(ab['concept_left_control'], 2)} and "
                   f"{fmt(ab['label_left_control'], 2)} when the next-ranked active latent is zeroed instead.\n")
    deb = iv.get("debias") or []
    if deb:
        out.append(debias_text(deb, iv.get("steering_card", {}).get("n_flagged", "?")))
    return "\n".join(out)


DEBIAS_GROUPS = {"all": "all together", "pro-popularity": "pro-popularity only (activation rises with popularity)",
                 "anti-popularity": "anti-popularity only (activation falls with popularity)"}


def debias_text(deb: list[dict], n_flagged) -> str:
    """The de-biasing paragraph: per group of popularity-flagged latents (all, and split by the sign of their
    popularity correlation when the summary has it), popularity percentile of the top 10 / NDCG@10 per
    factor, and which way suppressing them (factor 1 -> 0) moves popularity, in words."""
    groups: dict[str, list[dict]] = {}
    for d in deb:
        groups.setdefault(d.get("latents", "all"), []).append(d)
    parts = []
    for g, rows in groups.items():
        pts = "; ".join(f"×{d['factor']:g} {fmt(d['popularity_pct'], 1)} / {fmt(d['ndcg@10'], 4)}" for d in rows)
        by = {d["factor"]: d["popularity_pct"] for d in rows}
        move = ""
        if 1.0 in by and 0.0 in by and by[0.0] != by[1.0]:
            move = (f" (suppressing them **{'raises' if by[0.0] > by[1.0] else 'lowers'}** popularity "
                    f"{abs(by[0.0] - by[1.0]):.1f} points)")
        n = rows[0].get("n_latents")
        parts.append(f"{md(DEBIAS_GROUPS.get(g, g))}{'' if n is None else f', {int(n)}'}: {pts}{move}")
    split = len(groups) > 1
    return (f"**De-biasing** (the {n_flagged} popularity-flagged latents scaled by a factor; popularity percentile "
            "of the top 10 / NDCG@10" + ("; split by the sign of each latent's popularity correlation, since "
                                         "scaling both kinds together mixes opposite effects" if split else "")
            + "): " + ". ".join(parts) + ".\n")


YARDSTICK_COLUMNS = (("gain@KL0.1", "gain KL 0.1"), ("gain@KL0.3", "gain KL 0.3"), ("ndcg_kept@KL0.3", "NDCG@10 kept"),
                     ("auroc_k1", "AUROC k=1"), ("auroc_k4", "AUROC k=4"), ("io_overlap", "in–out overlap"))
YARDSTICK_SHORT = {"diffmean": "DiffMean", "probe": "probe", "sae_in": "SAE by label (input)",
                   "sae_out": "SAE by output", "sae_multi3": "SAE top-3 (code)", "sae_multi5": "SAE top-5 (code)",
                   "raw": "raw dimension", "random": "random direction", "random_sae_in": "random SAE (input)",
                   "random_sae_out": "random SAE (output)", "item_dir": "item direction", "pca": "PCA",
                   "full_probe": "probe on all h_u"}


YARDSTICK_LONG_ONLY = ("sae_multi5", "random_sae_in", "random_sae_out", "pca", "item_dir", "full_probe")   # rows only yardstick.md shows


def yardstick_table(y: dict, short: bool = False) -> str:
    """Methods x the yardstick's measures (`comparison.method_table` rows from summary.json), medians over
    concepts; '–' where a measure does not apply to a method. `short`: the README's version (short method
    names, KL 0.3 and AUROC k=1 only, without YARDSTICK_LONG_ONLY's rows; yardstick.md has every row and column)."""
    cols = [c for c in YARDSTICK_COLUMNS if not short or c[0] in ("gain@KL0.3", "ndcg_kept@KL0.3", "auroc_k1")]
    name = (lambda r: YARDSTICK_SHORT.get(r["method"], r["method"])) if short else (lambda r: r["name"])
    rows = [[md(name(r))] + [fmt(r.get(c), 3) for c, _ in cols] for r in y.get("table", [])
            if not short or r["method"] not in YARDSTICK_LONG_ONLY]
    return table(["method"] + [h for _, h in cols], rows, "l" + "r" * len(cols))


def yardstick_finding(y: dict | None) -> str:
    """One Key-findings line: which direction steers best per unit of disruption, how far the SAE is from
    DiffMean (output side and the input side a label finds), probing against raw dimensions, agreement."""
    if not y or not y.get("median_gain"):
        return ""
    g = y["median_gain"]["target"]
    at = lambda m: (g.get(m) or {}).get("0.3")
    r, pr, ag, fa = y["ratios_at_kl0.3"], y["probing_auroc"], y["agreement"], y["faithfulness"]
    sae_best = max((at(m) for m in ("sae_out", "sae_multi3", "sae_multi5") if at(m) is not None), default=None)
    return (f"Yardstick ({y['n_concepts']} concepts; median top-10 concept gain at matched disruption, a KL divergence of 0.3 between the edited and unedited rankings of the whole catalogue): "
            f"DiffMean {fmt(at('diffmean'), 3)}, probe {fmt(at('probe'), 3)}, best SAE output side {fmt(sae_best, 3)} "
            f"({fmt(r.get('sae_best_out_vs_diffmean'), 2)}× DiffMean), the latent its label finds {fmt(at('sae_in'), 3)} "
            f"({fmt(r.get('sae_in_vs_diffmean'), 2)}×), raw dimension {fmt(at('raw'), 3)}, random direction "
            f"{fmt(at('random'), 3)}; probing AUROC at k = 1 SAE {fmt((pr.get('sae') or {}).get('1'), 3)}, raw "
            f"{fmt((pr.get('raw') or {}).get('1'), 3)}; top-20 items by activation vs by output overlap "
            f"{fmt(ag['sae']['io_overlap_median'], 2)}; an explanation's 3 cited concepts deleted: median rank drop "
            f"{fmt(fa.get('median_drop_cited'), 1)} (3 matched others {fmt(fa.get('median_drop_control'), 1)}).")
