"""The dataset report written from summary.json: Key findings first, the paper's tables, links to CSV files,
at most reports.README_BUDGET bytes; every data string escaped; sasrec.md / recsae.md from the same table functions; the summary
diff. The committed reports' summary.json files serve as fixtures of the real shape."""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from recsae_utils import reports, tables

ROOT = Path(__file__).resolve().parents[1]
REAL = [d for d in ("ml-1m", "grocery") if (ROOT / "reports" / d / "summary.json").exists()]
HOSTILE_TITLE = '"><img src=x onerror=alert(1)>'
HOSTILE_GENRE = "<b onmouseover=alert(1)>x</b>"


def _folder(tmp_path, summary: dict, name: str = "ml-1m", run: dict | None = None) -> Path:
    rd = tmp_path / name
    rd.mkdir(parents=True)
    (rd / "summary.json").write_text(json.dumps(summary))
    if run is not None:
        (rd / "run.json").write_text(json.dumps(run))
    return rd


def _real(ds: str) -> tuple[dict, dict]:
    d = ROOT / "reports" / ds
    return json.loads((d / "summary.json").read_text()), json.loads((d / "run.json").read_text())


def _tables(text: str) -> list[list[str]]:
    """Markdown tables as lists of their lines."""
    out, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    return out


def _cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line.strip())) - 2        # unescaped pipes delimit the cells


def _findings(text: str) -> list[str]:
    block = text.split("## Key findings\n\n", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()


@pytest.mark.parametrize("ds", REAL)
def test_report_on_the_real_summaries(tmp_path, ds):
    s, run = _real(ds)
    rd = _folder(tmp_path, s, ds, run)
    (rd / "concept_browser.html").write_bytes(b"x" * 6_200_000)          # the committed browser's size
    readme = reports.write_report(rd).read_text()
    assert len(readme.encode()) <= reports.README_BUDGET
    assert readme.startswith(f"# Results on {ds}\n") and readme.index("## Key findings") < readme.index("| row |")
    found = _findings(readme)
    assert 5 <= len(found) <= 10 and all(f.startswith("- ") for f in found)
    main, sc = s["sae"]["main"], s["concepts"]["scores"]
    voc = (lambda r: r["metadata"]) if "metadata" in sc["SAE"] else (lambda r: r)   # the headline vocabulary
    lead = voc(sc["SAE"])["median_bal_acc_random"] - voc(sc["raw h_u dimensions"])["median_bal_acc_random"]
    aim = reports.METADATA_AIM if "metadata" in sc["SAE"] else reports.DETECTION_AIM
    text = "\n".join(found)
    assert f"{main['fidelity']['retention']:.4f}" in text and f"{main['health']['explained_variance']:.4f}" in text
    if ds == "grocery":                                                # items, not movies, in Grocery's words
        assert "movies" not in text and ("items " in text) == ("specificity" in s["concepts"])
    det = next(f for f in found if f.startswith("- Detection"))
    assert f"{lead:+.3f}" in det and ("short of" in det) == (lead < aim) and f"{aim:+.2f} aim" in det
    assert "6.20 MB, **over** the 3 MB budget" in text
    assert "{'" not in readme and "': " not in readme                  # no Python dict in the prose
    for t in _tables(readme):
        assert len(t) <= 15                                            # the long tables live in CSV files
        assert len({_cells(line) for line in t}) == 1, t[0]
    assert f"| SAE | {int(sc['SAE']['n_scored']):,} |" in readme
    assert "**Variants**" in readme and "(detection.md)" in readme      # the window sweep lives in detection.md
    assert "**SAE against the raw dimensions**" in (rd / "detection.md").read_text()
    assert (rd / "concepts" / "sae_vs_raw.csv").exists() and "(concepts/sae_vs_raw.csv)" in readme
    # one source: sasrec.md and recsae.md come from the same table functions, from summary.json
    rec = tables.recommendation_table(s)
    assert rec in readme and rec in (rd / "recsae.md").read_text()
    assert tables.sasrec_table(s) in (rd / "sasrec.md").read_text()
    assert (rd / "sasrec.md").read_text().count("| seed ") == 2 * len(s["sasrec"]["seeds"])


@pytest.mark.parametrize("after", [0.0, 0.25])
def test_specificity_finding_and_explanation(tmp_path, after):
    """The specificity section adds one Key findings line (before -> after per view, against the 10% aim, which
    a planted all-zero 'after' makes hold by construction: flagged, not met; the score share the shown concepts
    carry, flagged when low) and the README's example explanation becomes the specific-first one; every other
    line stays as it was."""
    s, run = _real(REAL[0]) if REAL else pytest.skip("no committed report")
    s = copy.deepcopy(s)
    s["concepts"].pop("specificity", None)
    s.pop("interventions", None)
    base = _findings(reports.write_report(_folder(tmp_path / "a", s, "ml-1m", run)).read_text())
    s["concepts"]["specificity"] = {
        "rule": "x", "top": 5, "user": {"n": 10, "before": 0.86, "after": 0.0},
        "movie": {"n": 5, "before": 1.0, "after": after},
        "explanation": {"n": 20, "before": 0.99, "after": 0.0, "value_share_before": 0.811, "value_share_after": 0.05},
        "explanations": ["recommended Fargo (1996) because of: offbeat comedies (+0.31); background: 20 generic concepts (+4.10)"]}
    readme = reports.write_report(_folder(tmp_path / "b", s, "ml-1m", run)).read_text()
    found = _findings(readme)
    new = [f for f in found if f not in base]
    assert len(found) == len(base) + 1 <= 10 and len(new) == 1 and len(readme.encode()) <= reports.README_BUDGET
    line = new[0]
    assert "users 86.0% → 0.0%" in line and f"movies 100.0% → {100 * after:.1f}%" in line
    assert "explanations 99.0% → 0.0%" in line and "5.0% of a recommended item's positive contribution (was 81.1%)" in line
    # every view exactly at 0 after showing generic latents apart: zero by construction, never counted as met
    assert ("0 by construction, as they are shown apart: the ≤ 10% aim is not counted as met" in line) == (after == 0.0)
    assert "meets" not in line and ("**short of** the ≤ 10% aim" in line) == (after > 0.1)
    assert "(**low**, under 50%" in line                 # 5% of the score: flagged
    assert "A recommendation explained" in readme and "offbeat comedies (+0.31); background: 20 generic" in readme


def test_hostile_titles_and_genres_are_escaped(tmp_path):
    """Item metadata reaches the README through labels, example titles, explanations and model names; none
    of it may open an HTML tag or break a table when the Markdown is rendered."""
    mistune = pytest.importorskip("mistune")
    s, run = _real(REAL[0]) if REAL else pytest.skip("no committed report")
    s = copy.deepcopy(s)
    ex = s["concepts"]["examples"][0]
    ex["name"] = f"{HOSTILE_GENRE} + Drama ({HOSTILE_TITLE}) | col\nnew row"
    ex["top_by_lift"] = [HOSTILE_TITLE, "[click](javascript:alert(1))"]
    s["concepts"]["explanations"][0] = f"recommended {HOSTILE_TITLE} because of: {HOSTILE_GENRE} (+1.0)"
    s["concepts"]["scores"][HOSTILE_GENRE] = dict(s["concepts"]["scores"]["SAE"])
    s["concepts"]["labeler"] = HOSTILE_TITLE
    s["concepts"]["labelers"] = {HOSTILE_TITLE: 5}                   # summaries since the label-precision change
    spec_expl = (s["concepts"].get("specificity") or {}).get("explanations")
    if spec_expl:                                                     # the README shows the specific-first ones
        spec_expl[0] = s["concepts"]["explanations"][0]
    s["data"]["manifest"]["protocol"] = HOSTILE_GENRE
    run = dict(run, command="make all ```\n<script>alert(1)</script>")
    path = reports.write_report(_folder(tmp_path, s, "ml-1m", run))
    readme = path.read_text()
    detection = (path.parent / "detection.md").read_text()           # the example concepts live here
    for text in (readme, detection):
        html = mistune.create_markdown(escape=False, plugins=["table"])(text)
        for tag in ("<img", "<b ", "<b>", "<script", 'href="javascript'):
            assert tag not in html, tag
        for t in _tables(text):
            assert len({_cells(line) for line in t}) == 1, t
    assert "&lt;img src=x onerror=alert(1)&gt;" in readme                # the labeler and the explanation
    assert "&lt;img src=x onerror=alert(1)&gt;" in detection and "\\| col new row" in detection


def test_md_escapes_markup_and_keeps_plain_text():
    assert tables.md("Singin' in the Rain (1952)") == "Singin' in the Rain (1952)"
    assert tables.md("raw h_u dimensions") == "raw h_u dimensions"
    assert tables.md("a|b\nc") == "a\\|b c"
    assert tables.md("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    assert tables.md("M*A*S*H [x](y) &lt;") == "M\\*A\\*S\\*H [x\\](y) &amp;lt;"


def test_report_on_partial_and_tiny_summaries(tmp_path):
    """After stage 02 of a tiny run: one seed, no reference numbers, no SAE or concepts yet."""
    s, _ = _real(REAL[0]) if REAL else pytest.skip("no committed report")
    sr = copy.deepcopy(s["sasrec"])
    sr["seeds"] = {"0": sr["seeds"]["0"]}
    sr["reference"] = {}
    part = {"data": s["data"], "sasrec": sr}
    rd = _folder(tmp_path, part)
    readme = reports.write_report(rd).read_text()
    assert "mean ± std" not in readme and "reference" not in readme.split("## Files")[0].lower()
    assert "## The default SAE" not in readme and "## Detection" not in readme
    assert len(_findings(readme)) == 2 and not (rd / "recsae.md").exists()
    table = reports.write_sasrec_md(rd)
    assert table.count("| seed 0 ") == 2 and "mean test" not in table
    # a summary without concepts still gets the SAE's findings and tables
    full = copy.deepcopy(s)
    del full["concepts"]
    readme = reports.write_report(_folder(tmp_path / "b", full)).read_text()
    assert "## The default SAE's fidelity" in readme and "Detection" not in readme


def test_diff_summaries_ignores_timing_and_finds_a_change(tmp_path, capsys):
    a = {"sasrec": {"test": {"NDCG@10": 0.08}, "seconds": 10.0, "seeds": {"0": {"train_seconds_per_epoch": 1.0}}},
         "sae_fit": {"h_u_seconds": 0.3, "main": {"history": [{"loss": 1.0, "seconds": 2.0}]}},
         "concepts": {"scores": {"SAE": {"n_scored": 5.0}}, "flag": True, "x": float("nan")}}
    b = copy.deepcopy(a)
    b["sasrec"]["seconds"] = 99.0
    b["sae_fit"]["h_u_seconds"] = 9.9
    b["sae_fit"]["main"]["history"][0]["seconds"] = 7.0
    b["sasrec"]["seeds"]["0"]["train_seconds_per_epoch"] = 3.0
    assert reports.diff_summaries(a, b) == []
    b["sae_fit"]["main"]["history"][0]["loss"] = 1.5
    b["concepts"]["flag"] = 1
    b["concepts"]["new"] = 2
    got = reports.diff_summaries(a, b)
    assert got == [("sae_fit.main.history[0].loss", 1.0, 1.5), ("concepts.flag", True, 1),
                   ("concepts.new", "<missing>", 2)]
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    assert reports.main(["diff", str(pa), str(pb)]) == 1
    out = capsys.readouterr().out
    assert "| sae_fit.main.history[0].loss | 1.0 | 1.5 |" in out and "3 difference(s)" in out
    assert reports.main(["diff", str(pa), str(pa)]) == 0
    if REAL:
        shutil.copy(ROOT / "reports" / REAL[0] / "summary.json", tmp_path / "s.json")
        assert reports.main(["diff", str(tmp_path / "s.json"), str(ROOT / "reports" / REAL[0])]) == 0


@pytest.mark.skipif(not REAL, reason="needs a committed reports/<dataset>/summary.json")
def test_degraded_llm_stage_opens_the_key_findings(tmp_path):
    """Labels that failed are the first Key finding (never buried under the headline numbers), and the
    concept stage reads them from the LLM meta files into the summary's `llm` / `degraded` keys."""
    from recsae_utils import concepts, config

    s, run = _real(REAL[0])
    cfg = config.load(REAL[0], "tiny", run_root=str(tmp_path / "runs"), labeler="openai")
    assert concepts.llm_report(config.load(REAL[0], "tiny", run_root=str(tmp_path / "runs"))) == {}
    meta = cfg.run_dir / "labels" / "openai" / "labels_meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"n_failed": 3, "failures_by_kind": {"http_500": 3}, "failed_latents": [1, 2, 5],
                                "n_skipped_budget": 0, "problems": ["3 of 58 labels failed (http_500: 3)"]}))
    rep = concepts.llm_report(cfg)
    assert rep["llm"]["labels"]["n_failed"] == 3 and rep["degraded"] == ["labels: 3 of 58 labels failed (http_500: 3)"]
    s["concepts"].update(rep)
    lines = reports.key_findings(s, _folder(tmp_path, s, run=run))
    assert lines[0].startswith("**Degraded**") and "3 of 58 labels failed" in lines[0]
    assert len(lines) <= reports.MAX_FINDINGS


def _interventions(sae_share: float) -> dict:
    per = lambda v: {b: v for b in ("0.1", "0.25", "0.5", "1", "2")}
    model = lambda share, gain: {"n_units": 300, "eligible_units": 900, "steerable_share": share,
                                 "label_gain": per(gain), "concept_share": per(0.1), "ndcg@10": per(0.05)}
    return {"betas": [0.1, 0.25, 0.5, 1.0, 2.0],
            "models": {"SAE": model(sae_share, 0.04), "raw h_u dimensions": model(0.508, 0.12),
                       "random SAE": model(0.44, 0.1)},
            "ablation": {"n_units": 300, "concept_in": 1.0, "concept_left": 0.5, "concept_left_control": 0.1,
                         "label_in": 3.0, "label_left": 1.0, "label_left_control": 0.5},
            "debias": [{"factor": 1.0, "popularity_pct": 90.0, "ndcg@10": 0.1}], "steering_card": {"n_flagged": 12}}


@pytest.mark.parametrize("share", [0.075, 0.6])
def test_interventions_finding_and_section(tmp_path, share):
    """The steering line joins Key findings (against the 50% aim and each baseline) without pushing out the
    browser's size, and the README gets an Interventions section, within the README budget."""
    s, run = _real(REAL[0]) if REAL else pytest.skip("no committed report")
    s = copy.deepcopy(s)
    s["interventions"] = _interventions(share)
    rd = _folder(tmp_path, s, "ml-1m", run)
    (rd / "concept_browser.html").write_bytes(b"x" * 6_200_000)
    readme = reports.write_report(rd).read_text()
    found = "\n".join(_findings(readme))
    assert len(_findings(readme)) <= 10 and len(readme.encode()) <= reports.README_BUDGET
    assert f"{100 * share:.1f}% of 300 specific SAE latents steerable" in found
    assert ("**short of** the ≥ 50% aim" in found) == (share < 0.5) and "raw h_u dimensions 50.8%" in found
    assert ("**the SAE does not lead**" in found) == (share < 0.508)
    assert "6.20 MB, **over** the 3 MB budget" in found
    page = (rd / "interventions.md").read_text()                   # the tables live one link away
    assert "## Interventions" in readme and "(interventions.md)" in readme and "**Ablation**" not in readme
    assert f"| SAE (300) | {100 * share:.1f}% |" in page and "**Ablation** of 300" in page and "**De-biasing**" in page


def test_steering_finding_states_why():
    iv = {"models": {"SAE": {"steerable_share": 0.09, "n_units": 300, "label_gain": {"1": 0.02},
                             "why": {"in_span": 0.05, "label_cos": 0.02, "gain_vs_label_cos_spearman": 0.6}},
                     "raw h_u dimensions": {"steerable_share": 0.5, "n_units": 126, "label_gain": {"1": 0.15}}},
          "random_in_span": 0.31, "span": 20}
    line = reports.steering_finding(iv)
    assert "**short of** the ≥ 50% aim" in line and "(**the SAE does not lead**)" in line
    assert "keep 5.0% of their norm in the item embeddings' 20 leading principal directions (random directions 31.0%)" in line
    assert "Spearman 0.60" in line
    del iv["random_in_span"]
    assert "Why:" not in reports.steering_finding(iv)


def _with_vocabularies(s: dict, drop: float) -> dict:
    """The real summary plus the metadata vocabulary and coherence keys that stage 05 now adds (made-up
    numbers: each model's exemplar medians and shares lowered by `drop`)."""
    s = copy.deepcopy(s)
    for r in s["concepts"]["scores"].values():
        r["metadata"] = {k: (v - drop if "bal_acc" in k else v) for k, v in r.items()}
        r["metadata_upper_half"] = {k: (v + 0.05 if "bal_acc" in k else v) for k, v in r["metadata"].items()}
        r["exemplars_upper_half"] = dict(r)
    s["concepts"]["coherence"] = {n: {"n": 100, "median": 0.4, "median_random": 0.2, "share_above_random": 0.9,
                                      "share_above_random_p95": 0.5} for n in s["concepts"]["scores"]}
    return s


@pytest.mark.parametrize("ds", REAL)
def test_detection_finding_leads_with_metadata_and_states_the_result(tmp_path, ds):
    """Key findings: metadata-only numbers first with the exemplar ones in brackets, the aim judged on the
    metadata lead, every baseline's median and share, and a plain verdict; the Detection table shows both
    vocabularies; the Labels line carries the coherence; the README stays within the README budget."""
    s0, run = _real(ds)
    s = _with_vocabularies(s0, 0.1)
    rd = _folder(tmp_path, s, ds, run)
    (rd / "concept_browser.html").write_bytes(b"x" * 6_200_000)
    readme = reports.write_report(rd).read_text()
    assert len(readme.encode()) <= reports.README_BUDGET
    sc = s["concepts"]["scores"]
    det = next(f for f in _findings(readme) if f.startswith("- Detection"))
    sae, raw, rnd = sc["SAE"], sc["raw h_u dimensions"], sc["random SAE"]
    lead = sae["metadata"]["median_bal_acc_random"] - raw["metadata"]["median_bal_acc_random"]
    assert "metadata-only labels, i.e. what a label names [with its example items]" in det
    assert f"SAE {sae['metadata']['median_bal_acc_random']:.3f} [{sae['median_bal_acc_random']:.3f}]" in det
    assert f"random SAE {rnd['metadata']['median_bal_acc_random']:.3f} [{rnd['median_bal_acc_random']:.3f}]" in det
    assert f"lead over raw {lead:+.3f}" in det and ("**short of**" in det) == (lead < reports.METADATA_AIM)
    assert f"the {reports.METADATA_AIM:+.2f} aim" in det
    assert f"random SAE {100 * rnd['metadata']['share_bal_acc_ge_0.8_random']:.1f}% " in det
    assert f"on each latent's stronger half of firings SAE {sae['metadata_upper_half']['median_bal_acc_random']:.3f}" in det
    leads = all(sae["metadata"][k] > r["metadata"][k] for r in (raw, rnd)
                for k in ("median_bal_acc_random", "share_bal_acc_ge_0.8_random"))
    assert ("**the SAE does not lead both baselines**" in det) == (not leads)
    assert "| model | latents scored | metadata median | metadata share ≥ 0.8 | exemplars median |" in readme
    assert f"| SAE | {int(sae['n_scored']):,} | {sae['metadata']['median_bal_acc_random']:.3f} |" in readme
    lab = next(f for f in _findings(readme) if f.startswith("- Labels"))
    assert "above popularity-matched random: SAE 90.0%, raw 90.0%, random SAE 90.0% (SAE median 0.400 vs 0.200)" in lab
    share = s["concepts"].get("generic_slot_share")
    words = "of all latent firings in the training codes"
    assert (share is None and words not in lab) or (f"(together {share:.1%} {words}; "
                                                    f"{'meets' if share <= reports.GENERIC_SLOT_AIM else '**short of**'} "
                                                    "the ≤ 20% aim)") in lab
    for v, verdict in ((0.1, "meets"), (0.52, "**short of**")):
        assert reports.generic_slots_text(v) == f" (together {v:.1%} {words}; {verdict} the ≤ 20% aim)"
    assert "slots" not in lab and "made by the offline" in lab and "no LLM labelled these latents" in lab and "came from ChatGPT" in lab
    # the same summary without the new keys keeps the exemplar-only line
    s_old = copy.deepcopy(s0)
    for r in s_old["concepts"]["scores"].values():
        for key in ("metadata", "metadata_upper_half", "exemplars_upper_half"):
            r.pop(key, None)
    old = next(f for f in _findings(reports.write_report(_folder(tmp_path / "old", s_old, ds, run)).read_text())
               if f.startswith("- Detection"))
    assert "metadata" not in old and f"SAE {s_old['concepts']['scores']['SAE']['median_bal_acc_random']:.3f}, raw" in old


def test_grocery_result_stated_plainly():
    """Grocery's committed numbers: the SAE leads neither baseline on share >= 0.8, and the line says so."""
    if "grocery" not in REAL:
        pytest.skip("no committed Grocery report")
    s, _ = _real("grocery")
    det = reports.detection_finding(s["concepts"])
    sc = s["concepts"]["scores"]
    assert sc["SAE"]["share_bal_acc_ge_0.8_random"] < sc["random SAE"]["share_bal_acc_ge_0.8_random"]
    meta = "metadata" in sc["SAE"]                                   # the headline vocabulary, if scored
    voc = (lambda r: r["metadata"]) if meta else (lambda r: r)
    aim = reports.METADATA_AIM if meta else reports.DETECTION_AIM
    assert "(**the SAE does not lead both baselines**)" in det and f"(**short of** the {aim:+.2f} aim)" in det
    for n, short in (("SAE", "SAE"), ("raw h_u dimensions", "raw"), ("random SAE", "random SAE")):
        assert f"{short} {100 * voc(sc[n])['share_bal_acc_ge_0.8_random']:.1f}%" in det
        assert f"{n} {voc(sc[n])['median_bal_acc_random']:.3f}" in det


@pytest.mark.parametrize("share", [0.62, 0.31])
def test_stability_goes_on_the_default_sae_line(tmp_path, share):
    """The stability section adds to the default SAE's Key findings line (no new line): the share matched at
    decoder cosine >= 0.9 against the 50% aim, what matched pairs share, and the SASRec-seed matching."""
    s, run = _real(REAL[0]) if REAL else pytest.skip("no committed report")
    s = copy.deepcopy(s)
    s.pop("stability", None)
    base = _findings(reports.write_report(_folder(tmp_path / "a", s, "ml-1m", run)).read_text())
    s["stability"] = {"sae_seeds_mean": {"matched_0.9": share, "matched_0.7": 0.8, "median_similarity": 0.9,
                                         "n_latents": 2048, "top_item_jaccard": 0.55, "label_agreement": 0.4},
                      "sasrec_seeds_mean": {"matched_0.9": 0.05, "matched_0.7": 0.3}}
    readme = reports.write_report(_folder(tmp_path / "b", s, "ml-1m", run)).read_text()
    found = _findings(readme)
    assert len(found) == len(base) and len(readme.encode()) <= reports.README_BUDGET
    line = next(f for f in found if "back at decoder cosine" in f)
    assert line.startswith("Default SAE") or "default" in line.lower()
    assert f"another SAE seed: {100 * share:.1f}% of latents back at decoder cosine ≥ 0.9" in line
    assert ("(meets the 50% aim" in line) == (share >= 0.5) and ("(**short of** the 50% aim" in line) == (share < 0.5)
    assert "share 0.55 of top items, 40.0% their concept" in line and "80.0% at ≥ 0.7" in line
    assert "another SASRec seed: 5.0% at activation correlation ≥ 0.9" in line


def test_tautological_aims_are_flagged_never_met():
    """A planted aim that holds by construction (every view exactly at the bound a method forces, from views
    that were not) is flagged; a measured value that merely meets its aim is not."""
    from recsae_utils import findings

    assert findings.tautological([0.93, 1.0, 0.91], [0.0, 0.0, 0.0], 0.0)
    assert not findings.tautological([0.93, 1.0], [0.0, 0.04], 0.0)          # one view measured: a real result
    assert not findings.tautological([0.0, 0.0], [0.0, 0.0], 0.0)            # was already there
    assert findings.aim_verdict(0.0, 0.1, higher=False, by_construction=True).startswith("**holds by construction")
    assert findings.aim_verdict(0.05, 0.1, higher=False) == "meets"
    assert findings.aim_verdict(0.5, 0.1, higher=False) == "**short of**"
    spec = {"top": 5, "user": {"before": 0.9, "after": 0.0, "value_share_before": 0.4, "value_share_after": 0.8},
            "movie": {"before": 1.0, "after": 0.0, "value_share_before": 0.3, "value_share_after": 0.6}}
    line = findings.specificity_text(spec)
    assert "0 by construction" in line and "meets" not in line and "**low**" not in line   # 80% and 60%: not low
    spec["movie"]["value_share_after"] = 0.01
    line = findings.specificity_text(spec)
    assert "1.0% of a movie's strength (was 30.0%)" in line and "(**low**, under 50%: the rest is generic latents)" in line
    spec["movie"]["after"] = 0.04                                             # measured, not forced: a verdict
    assert "meets the ≤ 10% aim" in findings.specificity_text(spec)


def test_label_precision_and_labeler_in_key_findings(tmp_path):
    """The labels line names its labeler and that the original study's labels came from ChatGPT, and prints
    `label_precision` when the summary has it (verdicts for the labels' own labeler on ML-1M), nothing when not."""
    s, run = _real(REAL[0]) if REAL else pytest.skip("no committed report")
    s = copy.deepcopy(s)
    for k in ("label_precision", "labelers"):                   # as a summary from before the precision measure
        s["concepts"].pop(k, None)
    s["concepts"]["labeler"] = "offline-shared"
    lab = next(f for f in _findings(reports.write_report(_folder(tmp_path / "a", s, "ml-1m", run)).read_text())
               if f.startswith("- Labels"))
    assert "Label precision" not in lab and "no LLM labelled these latents" in lab and "ChatGPT" in lab
    s["concepts"]["labelers"] = {"offline-shared": 2048}
    s["concepts"]["label_precision"] = {                       # concepts.label_precision's keys and fields
        "SAE": {"labeler": "offline-shared", "median": 0.7, "share_ge_0.6": 0.85, "share_no_signal": 0.2,
                "n_distinct_stems": 1500, "n_specific": 2000},
        "SAE, enrichment labeler": {"labeler": "offline-metadata (enrichment)", "median": 0.4, "share_ge_0.6": 0.37,
                                    "share_no_signal": 0.21, "n_distinct_stems": 509, "n_specific": 1998},
        "raw h_u dimensions": {"labeler": "offline-shared", "median": 0.3, "share_ge_0.6": 0.1,
                               "share_no_signal": 0.5, "n_distinct_stems": 40, "n_specific": 128}}
    readme = reports.write_report(_folder(tmp_path / "b", s, "ml-1m", run)).read_text()
    lab = next(f for f in _findings(readme) if f.startswith("- Labels"))
    assert "made by the offline-shared labeler (deterministic, from metadata; no LLM labelled these latents" in lab
    assert ("SAE (offline-shared) median 0.70; ≥ 0.6 85.0%; no clear signal 20.0%; 1,500 distinct labels of 2,000 "
            "(meets ≥ 80% at ≥ 0.6, **short of** ≤ 10% no signal, meets ≥ 70% distinct); ≥ 0.6 for the others: "
            "SAE, enrichment labeler 37.0%, raw h_u dimensions 10.0% (every labeler and baseline: detection.md).") in lab
    det = (tmp_path / "b" / "ml-1m" / "detection.md").read_text()   # every entry in full
    assert "| SAE, enrichment labeler | offline-metadata (enrichment) | 0.40 | 37.0% |" in det
    assert "| raw h_u dimensions | offline-shared | 0.30 | 10.0% |" in det and "509 / 1,998" in det
    s["concepts"]["label_precision"]["SAE"] |= {"median_heldout": 0.3, "share_ge_0.6_heldout": 0.165}
    s["concepts"]["label_precision"]["raw h_u dimensions"] |= {"median_heldout": 0.3, "share_ge_0.6_heldout": 0.25}
    lab = next(f for f in _findings(reports.write_report(_folder(tmp_path / "h", s, "ml-1m", run)).read_text())
               if f.startswith("- Labels"))                    # held-out top 10s: the aim is judged there, not in-sample
    assert ("SAE (offline-shared) median 0.70 in-sample, 0.30 held out; ≥ 0.6 85.0% in-sample, 16.5% held out; "
            "no clear signal 20.0%; 1,500 distinct labels of 2,000 (**short of** ≥ 80% at ≥ 0.6 held out,") in lab
    assert "high by construction" in lab and "≥ 0.6 held out for the others: raw h_u dimensions 25.0%" in lab
    for k in ("median_heldout", "share_ge_0.6_heldout"):
        del s["concepts"]["label_precision"]["SAE"][k], s["concepts"]["label_precision"]["raw h_u dimensions"][k]
    s["concepts"]["labelers"] = {"openai:qwen": 2000, "offline-shared": 48}     # an LLM run: its entry gets the verdicts
    s["concepts"]["label_precision"]["SAE, openai:qwen"] = {"labeler": "openai:qwen", "median": 0.9, "share_ge_0.6": 0.9,
                                                           "share_no_signal": 0.05, "n_distinct_stems": 1900,
                                                           "n_specific": 2000}
    lab = next(f for f in _findings(reports.write_report(_folder(tmp_path / "c", s, "ml-1m", run)).read_text())
               if f.startswith("- Labels"))
    assert "made by the openai:qwen 2,000, offline-shared 48 labelers (an LLM, offline where it gave no label;" in lab
    assert "SAE, openai:qwen (openai:qwen) median 0.90; ≥ 0.6 90.0%; no clear signal 5.0%; 1,900 distinct labels of 2,000 (meets" in lab
    assert len(readme.encode()) <= reports.README_BUDGET


@pytest.mark.parametrize("ds", REAL)
def test_detection_md_names_its_vocabulary(tmp_path, ds):
    """The window table uses the exemplar vocabulary; detection.md says so, with the SAE's median in both."""
    s, run = _real(ds)
    rd = _folder(tmp_path, s, ds, run)
    reports.write_report(rd)
    text = (rd / "detection.md").read_text()
    sae = s["concepts"]["scores"]["SAE"]
    if "metadata" not in sae:
        pytest.skip("summary predates the metadata vocabulary")
    assert "every number below uses the exemplar vocabulary, so it is not the README's headline" in text
    assert (f"{sae['median_bal_acc_random']:.3f} with exemplars against "
            f"{sae['metadata']['median_bal_acc_random']:.3f} from what its labels name alone") in text
    assert "in the exemplar vocabulary (not the metadata-only numbers above)" in (rd / "README.md").read_text()


def test_files_link_the_original_study_views(tmp_path):
    s, run = _real(REAL[0]) if REAL else pytest.skip("no committed report")
    rd = _folder(tmp_path, s, "ml-1m", run)
    (rd / "concepts").mkdir()
    (rd / "concepts" / "latent_top_items.csv").write_text("latent,view,rank,item,title,value\n")
    assert "poster_views" not in reports.write_report(rd).read_text()
    (rd / "concepts" / "poster_views.md").write_text("# x\n")
    readme = reports.write_report(rd).read_text()
    assert "[poster_views.md](concepts/poster_views.md): the original study's views beside ours" in readme
    assert "[latent_top_items](concepts/latent_top_items.csv)" in readme


def test_files_link_the_playground_page_and_state_its_size(tmp_path):
    """The steering playground's own page is linked and sized beside the browser when it exists."""
    s, run = _real(REAL[0]) if REAL else pytest.skip("no committed report")
    rd = _folder(tmp_path, s, "ml-1m", run)
    (rd / "concept_browser.html").write_bytes(b"x" * 2_500_000)
    readme = reports.write_report(rd).read_text()
    assert "steering_playground" not in readme and "no steering playground page" in readme
    (rd / "steering_playground.html").write_bytes(b"x" * 3_100_000)
    readme = reports.write_report(rd).read_text()
    assert "[steering_playground.html](steering_playground.html): the steering playground (open from disk)" in readme
    assert "steering playground page: 3.10 MB, **over** the 3 MB budget" in readme


def test_readme_headline_table_is_the_committed_reports(tmp_path):
    """The front page's table is what `python -m recsae_utils.reports readme` writes from the committed
    summaries: a report regenerated without rewriting the README fails here."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert reports.readme_table(readme, ROOT / "reports") == text
    s = json.loads((ROOT / "reports" / "ml-1m" / "summary.json").read_text())
    assert tables.fmt(s["sasrec"]["test"]["NDCG@10"]) in text and tables.fmt(s["recsae"]["test"]["NDCG@10"]) in text
    # a changed number is rewritten, the rest of the README kept
    (tmp_path / "ml-1m").mkdir()
    s["recsae"]["test"]["NDCG@10"] = 0.5
    (tmp_path / "ml-1m" / "summary.json").write_text(json.dumps(s))
    new = reports.readme_table(readme, tmp_path)
    assert "| ml-1m |" in new and "0.5000" in new and "| grocery |" not in new
    assert new.split(reports.README_BLOCK[1])[1] == text.split(reports.README_BLOCK[1])[1]
    (tmp_path / "bad.md").write_text("no markers here")
    with pytest.raises(ValueError, match="markers"):
        reports.readme_table(tmp_path / "bad.md", ROOT / "reports")


@pytest.mark.parametrize("ds", REAL)
def test_readme_fits_the_10_kb_budget_with_label_precision(tmp_path, ds):
    """The repository's 10 KB README budget holds on the real summaries with four label-precision entries
    added (as regeneration will add them): Key findings stay whole and first, the fidelity details and the
    interventions' tables move to linked pages in the same folder, and every relative link resolves."""
    assert reports.README_BUDGET == 10 * 1024
    s, run = _real(ds)
    s = copy.deepcopy(s)
    entry = lambda who, n: {"labeler": who, "median": 0.6667, "share_ge_0.6": 0.5123, "share_no_signal": 0.1234,
                            "n_distinct_stems": n - 123, "n_specific": n}
    lab = s["concepts"].get("labeler", "offline-shared")
    s["concepts"]["label_precision"] = {"SAE": entry(lab, 1998), "SAE, enrichment labeler": entry(
        "offline-metadata (enrichment)", 1998), "random SAE": entry(lab, 2027), "raw h_u dimensions": entry(lab, 128)}
    rd = _folder(tmp_path, s, ds, run)
    (rd / "concept_browser.html").write_bytes(b"x" * 6_200_000)
    readme = reports.write_report(rd).read_text()
    assert len(readme.encode()) <= reports.README_BUDGET
    found = reports.key_findings(s, rd)
    assert _findings(readme) == [f"- {f}" for f in found] and "Label precision" in "\n".join(found)
    assert readme.index("## Key findings") == readme.index("## ")                       # the first section
    recsae, fid = (rd / "recsae.md").read_text(), tables.fidelity_table(s)
    assert fid in recsae and "**Calibration.**" in recsae and "**Calibration.**" not in readme
    assert "(recsae.md)" in readme and "(interventions.md)" in readme
    assert "| SAE (" in (rd / "interventions.md").read_text()
    for link in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (rd / link).exists() or link.startswith(("figures/", "concepts/")), link  # copied folders only


def _mirror(src: Path, dst: Path) -> Path:
    """A report folder's files at their sizes (sparse: page sizes are in the findings, contents are not read)
    with its summary.json and run.json, which are."""
    for p in src.rglob("*"):
        if p.is_file():
            q = dst / p.relative_to(src)
            q.parent.mkdir(parents=True, exist_ok=True)
            if p.name in ("summary.json", "run.json"):
                shutil.copyfile(p, q)
            else:
                with open(q, "wb") as f:
                    f.truncate(p.stat().st_size)
    return dst


PAGES = ("README.md", "sasrec.md", "recsae.md", "detection.md", "interventions.md")


@pytest.mark.parametrize("ds", REAL)
def test_sasrec_report_text_unchanged_with_or_without_the_model_recorded(tmp_path, ds):
    """SASRec's report is today's, byte for byte (the committed pages), whether its summary records the model
    ('sasrec') or is older and does not (read as SASRec)."""
    src = ROOT / "reports" / ds
    for tag, model in (("recorded", "sasrec"), ("older", None)):
        rd = _mirror(src, tmp_path / tag / ds)
        s = json.loads((rd / "summary.json").read_text())
        if model is None:
            s["sasrec"]["config"].pop("model", None)
        else:
            s["sasrec"]["config"]["model"] = model
        (rd / "summary.json").write_text(json.dumps(s))
        reports.write_report(rd)
        for page in PAGES:
            if (src / page).exists():
                assert (rd / page).read_text() == (src / page).read_text(), (tag, page)


def test_another_models_report_names_it_everywhere(tmp_path):
    """A BPRMF run's summary (model recorded in the `sasrec` section's config, no `data` section because stage 01
    was reused, no SASRec reference numbers) gives 'BPRMF' in the title, the Key findings line, the table rows,
    the seeds page and the figure captions, the dataset from the config (not the folder's name 'bprmf'), and no
    'SASRec' anywhere: before the fix every one of these said SASRec and the title 'Results on bprmf'."""
    if "grocery" not in REAL:
        pytest.skip("no committed Grocery report")
    rd = _mirror(ROOT / "reports" / "grocery", tmp_path / "grocery" / "bprmf")
    s = json.loads((rd / "summary.json").read_text())
    s.pop("data")
    s["sasrec"]["config"]["model"] = "bprmf"
    s["sasrec"]["reference"] = {}
    s["stability"] = {"sae_seeds_mean": {"matched_0.9": 0.4, "matched_0.7": 0.8},
                      "sasrec_seeds_mean": {"matched_0.9": 0.05, "matched_0.7": 0.3}}
    (rd / "summary.json").write_text(json.dumps(s))
    (rd / "run.json").write_text(json.dumps({"command": "RECSAE_MODEL=bprmf make all DATASETS=grocery"}))
    readme = reports.write_report(rd).read_text()
    sr = s["sasrec"]
    assert readme.startswith("# Results on grocery (BPRMF)\n")
    assert f"- BPRMF test NDCG@10 {sr['test']['NDCG@10']:.4f} (mean of {len(sr['seeds'])} seeds " in readme
    assert "another BPRMF seed: 5.0% at activation correlation ≥ 0.9" in readme
    for row in (f"| BPRMF test (seed {sr['primary_seed']}) |", f"| BPRMF test, mean ± std of {len(sr['seeds'])} seeds |",
                "| BPRMF dev |"):
        assert row in readme and row in (rd / "recsae.md").read_text()
    assert f"BPRMF: best epoch {sr['best_epoch']} of " in readme
    assert "![BPRMF training](figures/sasrec_training.png)" in readme
    assert "![BPRMF vs RecSAE across K](figures/sasrec_vs_recsae.png)" in readme
    assert (rd / "sasrec.md").read_text().startswith("# BPRMF on grocery\n")
    recsae_md = (rd / "recsae.md").read_text()
    assert recsae_md.startswith("# RecSAE on grocery (BPRMF)\n") and "\n| BPRMF | " in recsae_md
    assert (rd / "interventions.md").read_text().startswith("# Interventions on grocery (BPRMF): ")
    for page in PAGES:
        if (rd / page).exists():
            assert "SASRec" not in (rd / page).read_text(), page
            assert " on bprmf" not in (rd / page).read_text(), page
    # the front-page table: the label heads the columns; several models: each row names its own
    sas = json.loads((ROOT / "reports" / "grocery" / "summary.json").read_text())
    assert "| dataset | BPRMF HR@10 | BPRMF NDCG@10 |" in tables.headline_table({"grocery": s})
    mixed = tables.headline_table({"grocery": sas, "grocery ": s})
    assert "| dataset | base model HR@10 |" in mixed and "| grocery (SASRec) |" in mixed and "(BPRMF) |" in mixed
    assert "| dataset | SASRec HR@10 | SASRec NDCG@10 |" in tables.headline_table({"grocery": sas})
