"""The base models compared (`model_comparison`): reports/<dataset>/models.md and models.json from each model's
summary.json, on made-up summaries whose numbers are known; a model without a summary gets its row."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsae_utils import model_comparison, reports


def made_up(model: str, ndcg: list[float], hr: list[float], retention: float, generic: float, steerable: float,
            sae_out: float, diffmean: float, precision: float) -> dict:
    """A summary.json with the sections the table reads, every number given (the rest fixed)."""
    seeds = {str(i): {"test": {"NDCG@10": n, "HR@10": h}} for i, (n, h) in enumerate(zip(ndcg, hr))}
    mean = lambda v: sum(v) / len(v)
    sd = lambda v: (sum((x - mean(v)) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
    sr = {"config": {"model": model}, "primary_seed": 0, "seeds": seeds, "test": seeds["0"]["test"]}
    if len(ndcg) > 1:
        sr |= {"test_mean": {"NDCG@10": mean(ndcg), "HR@10": mean(hr)}, "test_std": {"NDCG@10": sd(ndcg), "HR@10": sd(hr)}}
    gain = {"sae_out": sae_out, "sae_multi3": sae_out + 0.01, "sae_in": 0.02, "diffmean": diffmean, "raw": 0.05,
            "random": 0.04}
    return {"sasrec": sr,
            "sae": {"main": {"config": {"n_latents": 64},
                             "fidelity": {"retention": retention, "retention_ci_low": retention - 0.02,
                                          "retention_ci_high": retention + 0.01},
                             "health": {"explained_variance": 0.95, "dead_fraction": 0.125}}},
            "concepts": {"n_latents": 64, "live_latents": 60, "generic_latents": 4, "generic_slot_share": generic,
                         "labelers": {"offline-shared": 60},
                         "label_precision": {"SAE": {"median_heldout": 0.1},
                                             "SAE, offline-shared": {"median_heldout": precision,
                                                                     "share_ge_0.6_heldout": 0.25}}},
            "interventions": {"models": {"SAE": {"steerable_share": steerable}}},
            "yardstick": {"median_gain": {"target": {m: {"0.3": v, "1": 9.0} for m, v in gain.items()}},
                          "probing_auroc": {"sae": {"1": 0.61, "2": 0.7}, "raw": {"1": 0.66}}}}


@pytest.fixture()
def two_models(tmp_path) -> Path:
    rd = tmp_path / "reports" / "ml-1m"
    (rd / "bprmf").mkdir(parents=True)
    (rd / "summary.json").write_text(json.dumps(made_up("sasrec", [0.09, 0.08, 0.10], [0.16, 0.15, 0.17], 0.99,
                                                        0.70, 0.09, 0.19, 0.22, 0.3)))
    (rd / "bprmf" / "summary.json").write_text(json.dumps(made_up("bprmf", [0.04], [0.07], 0.98, 0.05, 0.21,
                                                                  0.02, 0.04, 0.5)))
    return rd


def test_two_summaries_give_their_rows_and_numbers_and_the_missing_models_theirs(two_models):
    md_path, json_path = model_comparison.write_comparison(two_models)
    cmp = json.loads(json_path.read_text())
    rows = {r["model"]: r for r in cmp["rows"]}
    assert [r["model"] for r in cmp["rows"]] == ["sasrec", "gru4rec", "bprmf", "lightgcn"]
    assert {m: r["status"] for m, r in rows.items()} == {"sasrec": "ok", "gru4rec": "missing", "bprmf": "ok",
                                                         "lightgcn": "missing"}
    s, b = rows["sasrec"], rows["bprmf"]
    assert s["seeds"] == 3 and s["NDCG@10"] == pytest.approx(0.09) and s["NDCG@10_sd"] == pytest.approx(0.01)
    assert s["HR@10"] == pytest.approx(0.16) and b["seeds"] == 1 and b["NDCG@10"] == 0.04 and b["NDCG@10_sd"] is None
    assert b["retention"] == 0.98 and b["retention_ci_low"] == pytest.approx(0.96) and b["dead_share"] == 0.125
    assert b["specific_latents"] == 56 and b["generic_slot_share"] == 0.05 and b["steerable_share"] == 0.21
    assert b["gain_kl0.3"]["diffmean"] == 0.04 and b["auroc_k1"] == {"sae": 0.61, "raw": 0.66}
    assert b["label_precision_heldout"] == 0.5   # the labels the SAE was given (its labeler's entry), not 'SAE'
    text = md_path.read_text()
    assert "| SASRec | 3 | 0.0900 ± 0.0100 | 0.1600 ± 0.0100 | 0.9900 [0.9700, 1.0000] | 0.9500 | 12.5% | 70.0% | 56 of 64 |" in text
    assert "| BPRMF | 1 | 0.0400 | 0.0700 | 0.9800 [0.9600, 0.9900] |" in text
    assert "| GRU4Rec (no summary: ml-1m/gru4rec/summary.json not found) | - |" in text
    assert "| BPRMF | 0.020 | 0.030 | 0.020 | 0.040 | 0.050 | 0.040 | 21.0% | 0.610 | 0.660 | 0.50 (25.0%) |" in text
    # the sentences, from the numbers: BPRMF has fewer generic slots and more steerable latents; SASRec's best
    # output-side direction is 0.20 / 0.22 = 0.91x DiffMean's gain, BPRMF's 0.03 / 0.04 = 0.75x
    said = " ".join(cmp["text"])
    assert "The most specific concepts come from BPRMF's SAE: its generic latents hold 5.0% of the active slots (SASRec 70.0%)" in said
    assert "The most steerable per latent: BPRMF's, with 21.0%" in said and "(SASRec 9.0%)" in said
    assert "0.91× DiffMean's concept gain for SASRec (BPRMF 0.75×)" in said
    assert "No summary for GRU4Rec, LightGCN" in said and said in text.replace("\\", "")


def test_a_missing_section_or_another_models_summary_is_named_in_its_row(two_models):
    s = json.loads((two_models / "bprmf" / "summary.json").read_text())
    del s["yardstick"]
    (two_models / "bprmf" / "summary.json").write_text(json.dumps(s))
    (two_models / "lightgcn").mkdir()
    (two_models / "lightgcn" / "summary.json").write_text((two_models / "summary.json").read_text())  # SASRec's
    rows = {r["model"]: r for r in model_comparison.comparison(two_models)["rows"]}
    assert rows["bprmf"]["status"] == "partial" and rows["bprmf"]["missing_sections"] == ["yardstick"]
    assert rows["bprmf"]["gain_kl0.3"]["sae_out"] is None and rows["bprmf"]["retention"] == 0.98
    assert rows["lightgcn"]["status"] == "other model" and rows["lightgcn"]["summary_model"] == "sasrec"
    text = model_comparison.comparison_md(model_comparison.comparison(two_models))
    assert "BPRMF (no yardstick (stage 07))" in text and "LightGCN (its summary is sasrec's, not LightGCN's)" in text


def test_only_one_summary_compares_nothing(tmp_path):
    rd = tmp_path / "ml-1m"
    rd.mkdir()
    (rd / "summary.json").write_text(json.dumps(made_up("sasrec", [0.09], [0.16], 0.99, 0.7, 0.09, 0.19, 0.22, 0.3)))
    text = model_comparison.comparison(rd)["text"]
    assert text[0].startswith("Only SASRec has a summary here, so nothing is compared yet")
    assert not any("most" in t for t in text)


def test_the_table_is_rebuilt_alone_from_the_committed_summaries(two_models, capsys):
    root = two_models.parent
    assert model_comparison.main(["ml-1m", "--reports", str(root), "--models", "bprmf,sasrec"]) == 0
    cmp = json.loads((two_models / "models.json").read_text())
    assert [r["model"] for r in cmp["rows"]] == ["bprmf", "sasrec"] and "# The base models compared" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        model_comparison.main(["ml-1m", "--reports", str(root), "--models", "bprmff"])
    bare = root / "bare"   # the dataset README links the table once it exists
    bare.mkdir()
    reports.write_report(bare)
    assert "models.md" not in (bare / "README.md").read_text()
    (bare / "models.md").write_text("# the table")
    reports.write_report(bare)
    assert "[models.md](models.md): the base models' SAEs compared" in (bare / "README.md").read_text()
