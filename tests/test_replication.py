"""Stage 05's opt-in stability step (`replication`): more SAE seeds on the same h_u and the SAE of another
SASRec seed, each matched one-to-one to the default SAE, without touching the default SAE's own fit."""
from __future__ import annotations

import numpy as np
import pytest

from recsae_utils import artifacts, config, replication, stages, train
from recsae_utils.cards import latent_cards
from recsae_utils.dictionary import build_dictionaries
from recsae_utils.sae import encode_sparse


@pytest.fixture
def tiny_cfg(tiny_root, tmp_path, monkeypatch):
    for k, v in {"RECSAE_DATA_DIR": str(tiny_root), "RECSAE_RUN_ROOT": str(tmp_path / "runs"),
                 "RECSAE_REPORT_ROOT": str(tmp_path / "reports"), "RECSAE_SEEDS": "0,1", "RECSAE_ABLATIONS": "1",
                 "RECSAE_MAX_EPOCHS": "2"}.items():
        monkeypatch.setenv(k, v)
    return config.load("ml-1m", "tiny")


def test_stability_section_fits_apart_and_matches(tiny_cfg):
    cfg = tiny_cfg
    ctx = stages.stage_inputs(cfg)
    train.run_seeds(cfg, ctx.ds, ctx.inst, progress=False)  # stage 02: both SASRec seeds
    main = stages.fit_stage(cfg, ctx, cfg.sae_latents, cfg.sae_k, cfg.sae_variant, progress=False)
    sae_dir = cfg.run_dir / "sae"
    key = artifacts.read_json(sae_dir / "m64_k4_openai" / "done.json")["key"]
    idx, val = encode_sparse(main.sae, ctx.h["train"])
    d = build_dictionaries(idx, val, ctx.inst["train"].hist, ctx.ds.items, cfg.sae_latents, top_n=cfg.top_n)
    # stage 05's dictionary of the default SAE names its latents as the step itself would
    top0, lab0 = replication._concepts(cfg, ctx, main.sae)
    assert np.array_equal(replication._named(d, latent_cards(d))[0], top0) and replication._named(d, latent_cards(d))[1] == lab0
    out = replication.stability_section(cfg, ctx, main.sae, d, latent_cards(d))
    # the default SAE's fit is untouched; every other fit has its own folder
    assert artifacts.read_json(sae_dir / "m64_k4_openai" / "done.json")["key"] == key
    assert {p.name for p in sae_dir.iterdir()} >= {"m64_k4_openai_seed1", "m64_k4_openai_seed2", "m64_k4_openai_sasrec1"}
    assert (cfg.run_dir / "hu" / "seed1" / "test.npy").exists()
    assert set(out["sae_seeds"]) == {"1", "2"} and set(out["sasrec_seeds"]) == {"1"}
    for r in [*out["sae_seeds"].values(), *out["sasrec_seeds"].values()]:
        assert 0 <= r["matched_0.9"] <= r["matched_0.7"] <= 1 and r["n_latents"] == 64
        assert -1 <= r["median_similarity"] <= 1
    assert out["sae_seeds_mean"]["matched_0.7"] == pytest.approx(
        np.mean([r["matched_0.7"] for r in out["sae_seeds"].values()]))
    # a rerun reuses every fit and gives the same numbers
    assert replication.stability_section(cfg, ctx, main.sae, d, latent_cards(d)) == out
    assert len(replication.stability_table(out)) == 3


def test_top_items_pads_short_rows():
    from types import SimpleNamespace
    t = SimpleNamespace(ptr=np.array([0, 3, 3, 4]), item=np.array([7, 5, 9, 2]))
    d = SimpleNamespace(tables=t, m=3)
    assert replication.top_items(d, n=2).tolist() == [[7, 5], [-1, -1], [2, -1]]
