"""`make all` end to end on the tiny synthetic data, then again: nothing is recomputed; a parameter of
the last stage reruns that stage only."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "python").exists(),
                    reason="needs make and the project's .venv (created by `make test`)")
def test_make_all_then_rerun_reuses_everything(tmp_path, tiny_root):
    env = {**os.environ, "RECSAE_DATA_DIR": str(tiny_root), "RECSAE_RUN_DIR": str(tmp_path / "runs"),
           "RECSAE_REPORT_DIR": str(tmp_path / "reports"), "OPENAI_API_KEY": "", "MPLBACKEND": "Agg"}

    def make_all(extra_env=None):
        t0 = time.time()
        r = subprocess.run(["make", "all", "DATASETS=ml-1m", "PROFILE=tiny"], cwd=ROOT, env={**env, **(extra_env or {})},
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r.stdout, time.time() - t0

    out1, _ = make_all()
    rep = tmp_path / "reports" / "ml-1m"
    summary = json.loads((rep / "summary.json").read_text())
    for section in ("data", "sasrec", "recsae", "sae", "concepts"):
        assert section in summary, section
    assert (rep / "README.md").exists() and (rep / "run.json").exists()
    # the concept scores compare both SAE sizes with their baselines; the window sweep covers every model
    scores = summary["concepts"]["scores"]
    assert {"SAE", "raw h_u dimensions", "random SAE", "SAE (32 latents, k=2)", "random SAE (32 latents, k=2)"} \
        <= set(scores) and any(k.startswith("raw h_u dimensions (k=") for k in scores)
    windows = {(r["window"], r["model"]) for r in summary["concepts"]["detection_by_window"]}
    assert (1, "SAE") in windows and (1, "SAE (32 latents, k=2)") in windows
    strong = {(r["window"], r["model"]) for r in summary["concepts"]["detection_by_window"] if r["strong_q"] > 0}
    assert (1, "SAE") in strong and (1, "raw h_u dimensions") in strong and strong == windows
    assert (0, "SAE") in windows and (0, "raw h_u dimensions (k=8)") in windows     # each latent at its own window
    lat = pd.read_csv(rep / "concepts" / "latents.csv")
    read = lat.loc[lat["n_fire"] > 0, "reads_window"]
    assert read.notna().all() and set(read.astype(int)) <= {1, 3, 9, 20}
    assert len(pd.read_csv(rep / "concepts" / "scores_best_window.csv")) == len(lat)
    fid = summary["sae"]["main"]["fidelity"]
    assert fid["retention_ci_low"] <= fid["retention"] <= fid["retention_ci_high"]
    assert fid["retention_dev_ci_low"] <= fid["retention_dev"] <= fid["retention_dev_ci_high"]
    assert 0 < fid["noise_matched_retention"] and 0 <= fid["noise_matched_top10_overlap"] <= 1
    assert "**Variants**" in (rep / "README.md").read_text()
    assert "**SAE against the raw dimensions**" in (rep / "README.md").read_text()
    assert (rep / "concept_browser.html").exists()
    assert len(list((rep / "notebooks").glob("*.ipynb"))) == 5
    assert "| ml-1m | 05_label_concepts | ran |" in out1

    out2, secs = make_all()
    assert out2.count("| reused |") == 5 and "| ran |" not in out2, out2
    assert secs < 60

    out3, _ = make_all({"RECSAE_TOP_N": "5"})  # a stage-05 parameter: only that stage reruns
    assert "| ml-1m | 04_evaluate | reused |" in out3 and "| ml-1m | 05_label_concepts | ran |" in out3
