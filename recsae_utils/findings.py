"""Key findings: at most ten plain lines, every number from summary.json, each saying what fell short as
plainly as what held; an aim that holds by construction is named as such and never counted as met
(`aim_verdict`), every number that depends on a vocabulary names it, and shorthand is written out in plain
words. The dataset README (`reports.write_report`) opens with them."""
from __future__ import annotations

import re
from pathlib import Path

from .tables import (SAE_NAMES, dataset_name, fidelity_cell, fmt, md, model_label, pct, pm, sae_vs_raw, size_text,
                     table, variant_comparison, yardstick_finding)

DETECTION_AIM = 0.15        # the concepts issue's aim: SAE median balanced accuracy >= raw h_u dims + 0.15
METADATA_AIM = 0.10         # issue 13's aim for what a label names (metadata only): SAE >= raw h_u dims + 0.10
BROWSER_BUDGET_MB = 3.0     # the project's size budget for one concept browser file (issue 11: at most 3 MB)
MAX_FINDINGS = 10           # Key findings: at most this many lines
GENERIC_SHARE_AIM = 0.10    # issue 12: at most 10% generic latents among the top 5 concepts shown
GENERIC_SLOT_AIM = 0.20     # issue 13: generic latents hold at most 20% of the active slots (the default SAE's codes)


def page_size(path: Path) -> str:
    """'2.59 MB, within the 3 MB budget' for one HTML page (MB of 10**6 bytes)."""
    mb = path.stat().st_size / 1e6
    return f"{mb:.2f} MB, " + ("within" if mb <= BROWSER_BUDGET_MB else "**over**") + f" the {BROWSER_BUDGET_MB:g} MB budget"


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
        line = f"{md(model_label(s))} test NDCG@10 {t:.4f}"
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
                f"({pct(h['dead_fraction'])}), dense (firing on > 10% of inputs) {pct(h['dense_fraction'])}")
        if "noise_matched_retention" in f:
            line += f"; noise of the same size keeps retention {f['noise_matched_retention']:.4f}"
        if name == "main":
            line += stability_text(s.get("stability"), model_label(s))
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
        out.append(f"Labels, {labeler_text(c)}: {int(st.get('ok', 0)):,} ok"
                   + (f", **{failed:,} failed** ({md(', '.join(f'{k} {v}' for k, v in st.items() if k != 'ok'))})"
                      if failed else "")
                   + f" of {int(c['live_latents']):,} live latents"
                   + (f" ({int(c['n_latents']):,} in all)" if c["n_latents"] != c["live_latents"] else "") + "; "
                   f"{c['generic_latents']} flagged generic" + generic_slots_text(c.get("generic_slot_share"))
                   + f", {c['popularity_latents']} popularity-driven"
                   + coherence_text(c.get("coherence") or {}) + "."
                   + precision_text(c.get("label_precision"), c,
                                    dataset_name(s)))
        spec = c.get("specificity")
        if spec:
            out.append(specificity_text(spec, dataset_name(s) or "ml-1m"))
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
        line = f"Concept browser: {page_size(browser)}"
        playground = browser.parent / "steering_playground.html"   # written beside it by browser.write_browser
        line += (f"; steering playground page: {page_size(playground)}." if playground.exists()
                 else "; no steering playground page.")
        if len(out) >= MAX_FINDINGS:   # a full list: the size goes with the last line rather than be cut
            out[MAX_FINDINGS - 1] += " " + line
        else:
            out.append(line)
    return out[:MAX_FINDINGS]



def generic_slots_text(share: float | None) -> str:
    """' (generic latents hold x% of all firings ..., meets/short of the aim)' for the labels line; '' when the
    run predates it."""
    if share is None:
        return ""
    return (f" (together {share:.1%} of all latent firings in the training codes; "
            + aim_verdict(share, GENERIC_SLOT_AIM, higher=False) + f" the ≤ {GENERIC_SLOT_AIM:.0%} aim)")


def aim_verdict(value: float, goal: float, higher: bool = True, by_construction: bool = False) -> str:
    """'meets' / '**short of**' an aim, or, for an aim that holds by construction (`tautological`), words that
    say so: such an aim is never counted as met."""
    if by_construction:
        return "**holds by construction, not counted as met:**"
    return "meets" if (value >= goal if higher else value <= goal) else "**short of**"


def tautological(before: list[float], after: list[float], bound: float) -> bool:
    """An aim that holds by construction: every view lands exactly on the bound the method forces (0.0 when
    the method shows the counted things apart, 1.0 when it keeps only them) although the views before it did
    not. A measured improvement is never exactly at the bound in every view."""
    return bool(after) and all(a == bound for a in after) and any(b != bound for b in before)


SCORE_SHARE_LOW = 0.5   # the specific concepts shown carry under half of what they explain: flagged as low


def specificity_text(spec: dict, dataset: str = "ml-1m") -> str:
    """The specific-first views: the generic share among the top concepts shown (an aim that holds by
    construction when generic latents are shown apart, flagged by `tautological`), and what the shown
    concepts carry of the score, flagged when under SCORE_SHARE_LOW."""
    views = [(v, spec[v]) for v in ("user", "movie", "explanation") if v in spec]
    noun = {} if dataset == "ml-1m" else {"movie": "item"}             # Grocery has items, not movies
    what = {"user": "a user's activation", "movie": "a movie's strength", "item": "an item's strength",
            "explanation": "a recommended item's positive contribution"}
    after, before = [r["after"] for _, r in views], [r["before"] for _, r in views]
    taut = tautological(before, after, 0.0)
    was = ", ".join(f"{noun.get(v, v)}s {pct(r['before'])} → {pct(r['after'])}" for v, r in views)
    line = (f"Specific concepts first: generic latents among the top {spec['top']} concepts shown {was} ("
            + (f"0 by construction, as they are shown apart: the ≤ {GENERIC_SHARE_AIM:.0%} aim is not counted as met"
               if taut else aim_verdict(max(after), GENERIC_SHARE_AIM, higher=False)
               + f" the ≤ {GENERIC_SHARE_AIM:.0%} aim; generic ones shown apart") + ")")
    carried = [(v, r) for v, r in views if r.get("value_share_after") is not None]
    if carried:
        low = [v for v, r in carried if r["value_share_after"] < SCORE_SHARE_LOW]
        line += (f"; the specific concepts shown carry "
                 + ", ".join(f"{pct(r['value_share_after'])} of {what[noun.get(v, v)]} "
                             f"(was {pct(r['value_share_before'])})" for v, r in carried)
                 + (f" (**low**, under {SCORE_SHARE_LOW:.0%}: the rest is generic latents"
                    + (" and the bias" if "explanation" in low else "") + ")" if low else ""))
    return line + "."


def labeler_text(c: dict) -> str:
    """Which labeler made the labels (with counts when several did: `labelers`), whether an LLM was involved,
    and that the original study's labels came from ChatGPT."""
    who = c.get("labelers") or {c.get("labeler", "?"): None}
    llm = [k for k in who if str(k).startswith("openai")]
    how = ("an LLM through the openai package" if len(llm) == len(who) else
           "deterministic, from metadata; no LLM labelled these latents" if not llm else
           "an LLM, offline where it gave no label")
    names = ", ".join(md(k) + (f" {int(n):,}" if n is not None and len(who) > 1 else "") for k, n in who.items())
    return (f"made by the {names} labeler{'s' if len(who) > 1 else ''} ({how}; the original study's labels came "
            "from ChatGPT)")


PRECISION_AIMS = {"share_ge_0.6": 0.8, "share_no_signal": 0.10, "distinct": 0.70}   # issue 23, ML-1M


def precision_text(lp: dict | None, c: dict, dataset: str | None = None) -> str:
    """' Label precision ...' (the share of a latent's top 10 items by activation count that carry what its
    label names) for the labels the SAE was given (its entry 'SAE, <labeler>', else 'SAE'), with verdicts against
    PRECISION_AIMS on ML-1M (the aims are ML-1M's), and the other entries' held-out share; '' when the summary has
    none. Every entry in full: `label_precision_table` (detection.md)."""
    if not lp:
        return ""
    own = own_precision_entry(lp, c)
    r = lp[own]
    n, held = r.get("n_specific") or 0, r.get("share_ge_0.6_heldout")
    both = lambda k: (f"{fmt(r.get(k), 2) if k == 'median' else pct(r.get(k))} in-sample, "
                      f"{fmt(r.get(k + '_heldout'), 2) if k == 'median' else pct(r.get(k + '_heldout'))} held out")
    text = (f"{md(own)} ({md(r.get('labeler'))}) median "
            + (both("median") + "; ≥ 0.6 " + both("share_ge_0.6") if held is not None
               else f"{fmt(r.get('median'), 2)}; ≥ 0.6 {pct(r.get('share_ge_0.6'))}")
            + f"; no clear signal {pct(r.get('share_no_signal'))}; {int(r.get('n_distinct_stems', 0)):,} distinct "
            f"labels of {int(n):,}")
    if dataset == "ml-1m" and n:
        ge = held if held is not None else r.get("share_ge_0.6")
        text += (f" ({aim_verdict(ge, PRECISION_AIMS['share_ge_0.6'])} ≥ 80% at ≥ 0.6"
                 + (" held out" if held is not None else "") + ", "
                 f"{aim_verdict(r.get('share_no_signal'), PRECISION_AIMS['share_no_signal'], higher=False)} ≤ 10% no "
                 f"signal, {aim_verdict(r.get('n_distinct_stems', 0) / n, PRECISION_AIMS['distinct'])} ≥ 70% distinct)")
    key = "share_ge_0.6_heldout" if held is not None else "share_ge_0.6"
    others = [f"{md(k)} {pct(v.get(key))}" for k, v in lp.items() if k != own and v.get(key) is not None]
    if others:
        text += f"; ≥ 0.6{' held out' if held is not None else ''} for the others: " + ", ".join(others)
    note = ("; in-sample it is high by construction for a labeler that names what those 10 share, so the aim is "
            "judged on the latent's top 10 among dev and test instances, which the labeler never read"
            if held is not None else "")
    return (" Label precision (share of a specific latent's top 10 items by activation count that carry what its "
            f"label names{note}): " + text + " (every labeler and baseline: detection.md).")


def own_precision_entry(lp: dict, c: dict) -> str:
    """The label-precision entry of the labels the SAE was given: 'SAE, <the labeler of most latents>' when
    the summary has it, else 'SAE' (else the first entry)."""
    who = c.get("labelers") or {c.get("labeler"): 1}
    major = max(who, key=lambda k: who[k] or 0)
    return f"SAE, {major}" if f"SAE, {major}" in lp else "SAE" if "SAE" in lp else next(iter(lp))


def label_precision_table(lp: dict | None) -> str:
    """detection.md's section: every `label_precision` entry (the SAE with each labeler, the baselines) in full."""
    if not lp:
        return ""
    rows = [[md(k), md(r.get("labeler")), fmt(r.get("median"), 2), pct(r.get("share_ge_0.6")),
             fmt(r.get("median_heldout"), 2), pct(r.get("share_ge_0.6_heldout")), pct(r.get("share_no_signal")),
             f"{int(r.get('n_distinct_stems', 0)):,} / {int(r.get('n_specific') or 0):,}"] for k, r in lp.items()]
    return ("## Label precision\n\nThe share of a specific latent's top 10 items by activation count that carry "
            "what its label names, on the training instances the labeler read and on dev and test instances it "
            "never read (held out).\n\n"
            + table(["labels of", "labeler", "median", "≥ 0.6", "held-out median", "held-out ≥ 0.6",
                     "no clear signal", "distinct labels / latents"], rows, "llrrrrrr"))


STABILITY_AIM = 0.5   # issue 13: at least half of the latents matched at decoder cosine >= 0.9 across SAE seeds


def stability_text(st: dict | None, base: str = "SASRec") -> str:
    """The default SAE line's tail: do its latents come back with another SAE seed (decoder cosine) and another
    seed of the base model `base` (activation correlation; the section's key says sasrec for every model), and
    do matched pairs mean the same (top items, labels)?"""
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
        text += f"; another {md(base)} seed: {pct(sr['matched_0.9'])} at activation correlation ≥ 0.9"
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
    head = "Detection (whole history, all firings" + ("; metadata-only labels, i.e. what a label names [with its "
                                                      "example items])" if meta else ")")

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
        line += "; on each latent's stronger half of firings " + ", ".join(f"{short.get(n, md(n))} {up[n]:.3f}"
                                                                           for n, _ in rows)
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
    return (f" Why: the SAE's directions keep {pct(w['in_span'])} of their norm in the item embeddings' "
            f"{iv.get('span', 20)} leading principal directions (random directions {pct(rnd)}), their median cosine "
            "with their "
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
    win, lose = ("openai", "reference code's") if m.group(1) == "openai" else ("reference code's", "openai")
    return (f"**Variants** (same size): the {win} SAE variant beats the {lose} on {m.group(2)} of 3 measures (openai, "
            f"the default = Gao et al.'s TopK; reference = the RecSAE code's quirks): "
            f"explained variance {o['health']['explained_variance']:.4f} vs {r['health']['explained_variance']:.4f}, "
            f"retention {o['fidelity']['retention']:.4f} vs {r['fidelity']['retention']:.4f}, dead "
            f"{pct(o['health']['dead_fraction'])} vs {pct(r['health']['dead_fraction'])}).")
