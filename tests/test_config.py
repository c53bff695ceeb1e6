"""Settings: every field from RECSAE_<FIELD>, old names as aliases, and a clear start-up error (variable,
value, what is allowed) for each setting that cannot work; SAEConfig's defaults are the run's."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsae_utils import artifacts, config, stages
from recsae_utils.sae import SAEConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("RECSAE_"):
            monkeypatch.delenv(k)
    return monkeypatch


def _another_value(name: str, v):
    """(text, parsed) of a valid non-default value for field `name` with default `v`."""
    if isinstance(v, bool):
        return str(int(not v)), not v
    if isinstance(v, int):
        return str(v + 1), v + 1
    if isinstance(v, float):
        return (repr(v / 2), v / 2) if v else ("0.25", 0.25)
    if isinstance(v, list):
        return "3,4", [3, 4]
    return {"labeler": ("openai", "openai"), "sae_variant": ("reference", "reference"),
            "sae_family": ("batchtopk", "batchtopk"), "llm_model": ("m2", "m2"), "sae_loss": ("score", "score"),
            "device": ("cpu", "cpu"), "model": ("gru4rec", "gru4rec")}[name]


def test_every_field_from_its_variable(clean_env):
    base = config.RunConfig()
    want = {}
    for f in dataclasses.fields(config.RunConfig):
        if f.name in ("dataset", "profile", "sae_input", *config.LOCATIONS):
            continue  # the dataset is given on the command line; profile and locations have their own tests;
            # sae_input='whitened' cannot go with sae_loss='score' (below)
        text, want[f.name] = _another_value(f.name, getattr(base, f.name))
        clean_env.setenv(f"RECSAE_{f.name.upper()}", text)
    cfg = config.load("ml-1m")
    assert {n: getattr(cfg, n) for n in want} == want and all(want[n] != getattr(base, n) for n in want)
    assert config.load("ml-1m", sae_k=4).sae_k == 4                          # an explicit override wins
    clean_env.setenv("RECSAE_SAE_LOSS", "mse")
    clean_env.setenv("RECSAE_SAE_INPUT", "whitened")
    assert config.load("ml-1m").sae_input == "whitened"
    clean_env.setenv("RECSAE_PROFILE", "tiny")
    assert config.load("ml-1m").profile == "tiny"


@pytest.mark.parametrize("alias,own,prop", [("RECSAE_RUN_DIR", "RECSAE_RUN_ROOT", "run_dir"),
                                            ("RECSAE_REPORT_DIR", "RECSAE_REPORT_ROOT", "report_dir")])
def test_locations_and_aliases(clean_env, tmp_path, alias, own, prop):
    clean_env.setenv(alias, str(tmp_path / "old"))
    assert getattr(config.load("ml-1m"), prop) == tmp_path / "old" / "ml-1m"
    clean_env.setenv(own, str(tmp_path / "new"))
    with pytest.raises(config.ConfigError, match=f"{alias}=.*{own}=.*disagree"):
        config.load("ml-1m")
    clean_env.delenv(alias)
    cfg = config.load("ml-1m")
    assert getattr(cfg, prop) == tmp_path / "new" / "ml-1m"
    assert cfg.to_dict()["run_root"] == cfg.to_dict()["report_root"] == ""   # the record stays machine-free


def test_data_and_cache_dir(clean_env, tmp_path):
    clean_env.setenv("RECSAE_DATA_DIR", str(tmp_path))
    clean_env.setenv("RECSAE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config.load("ml-1m")
    assert cfg.data_source == tmp_path and cfg.cache_dir == tmp_path / "cache" and cfg.data_dir == ""
    clean_env.setenv("RECSAE_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(config.ConfigError, match=r"RECSAE_DATA_DIR='.*nope': no such folder"):
        config.load("ml-1m")


@pytest.mark.parametrize("var,value,message", [
    ("RECSAE_SAE_KK", "8", r"RECSAE_SAE_KK='8': unknown setting; did you mean RECSAE_SAE_K\?"),
    ("RECSAE_SEDS", "0,1", r"did you mean RECSAE_SEEDS\?"),
    ("RECSAE_DATASET", "grocery", r"RECSAE_DATASET='grocery': the dataset is given on the command line"),
    ("RECSAE_SAE_AUX_RELU", "ture", r"RECSAE_SAE_AUX_RELU='ture': not a boolean; use 1/0, true/false or yes/no"),
    ("RECSAE_SAE_K", "abc", r"RECSAE_SAE_K='abc': not an integer"),
    ("RECSAE_SAE_LR", "fast", r"RECSAE_SAE_LR='fast': not a number"),
    ("RECSAE_SEEDS", "0,x", r"RECSAE_SEEDS='0,x': not comma-separated integers"),
    ("RECSAE_SAE_K", "0", r"RECSAE_SAE_K=0: must lie in 1..sae_latents \(2048\)"),
    ("RECSAE_SAE_K", "-3", r"RECSAE_SAE_K=-3: must lie in 1..sae_latents"),
    ("RECSAE_SAE_K", "4096", r"RECSAE_SAE_K=4096: must lie in 1..sae_latents \(2048\)"),
    ("RECSAE_SAE_ALT_K", "2000", r"RECSAE_SAE_ALT_K=2000: must lie in 1..sae_alt_latents \(1024\)"),
    ("RECSAE_SAE_LATENTS", "0", r"RECSAE_SAE_LATENTS=0: must be a positive integer"),
    ("RECSAE_MAX_EPOCHS", "0", r"RECSAE_MAX_EPOCHS=0: must be a positive integer"),
    ("RECSAE_SAE_BATCH_SIZE", "-1", r"must be a positive integer"),
    ("RECSAE_LR", "0", r"RECSAE_LR=0.0: must be > 0"),
    ("RECSAE_SAE_EPOCHS", "-1", r"RECSAE_SAE_EPOCHS=-1: must be >= 0"),
    ("RECSAE_SAE_LR_DECAY", "2", r"RECSAE_SAE_LR_DECAY=2.0: must lie in \[0, 1\]"),
    ("RECSAE_SEEDS", "", r"RECSAE_SEEDS=\[\]: must be one or more"),
    ("RECSAE_LABELER", "gpt4", r"RECSAE_LABELER='gpt4': choose one of offline, openai"),
    ("RECSAE_SAE_VARIANT", "anthropic", r"RECSAE_SAE_VARIANT='anthropic': choose one of openai, reference"),
    ("RECSAE_PROFILE", "huge", r"RECSAE_PROFILE='huge': unknown profile"),
    ("RECSAE_SAE_FAMILY", "jumprelu", r"RECSAE_SAE_FAMILY='jumprelu': choose one of topk, batchtopk, matryoshka"),
    ("RECSAE_DEVICE", "gpu", r"RECSAE_DEVICE='gpu': choose auto, cpu, cuda or cuda:N"),
    ("RECSAE_LLM_LIMIT", "-1", r"RECSAE_LLM_LIMIT=-1: must be >= 0"),
    ("RECSAE_SAE_LOSS", "l1", r"RECSAE_SAE_LOSS='l1': choose one of mse, score, kl"),
    ("RECSAE_SAE_INPUT", "pca", r"RECSAE_SAE_INPUT='pca': choose one of raw, whitened"),
    ("RECSAE_SAE_DENSE", "64", r"RECSAE_SAE_DENSE=64: must lie in 0..d_model - 1 \(63\)"),
    ("RECSAE_SAE_DENSE", "-2", r"RECSAE_SAE_DENSE=-2: must lie in 0..d_model - 1"),
    ("RECSAE_SAE_EUCLID", "-1", r"RECSAE_SAE_EUCLID=-1.0: must be a finite number >= 0"),
    ("RECSAE_SAE_EUCLID", "inf", r"RECSAE_SAE_EUCLID=inf: must be a finite number >= 0"),
])
def test_bad_settings_fail_at_load(clean_env, var, value, message):
    clean_env.setenv(var, value)
    with pytest.raises(config.ConfigError, match=message):
        config.load("ml-1m")


@pytest.mark.parametrize("env,message", [
    ({"RECSAE_SAE_LOSS": "score", "RECSAE_SAE_INPUT": "whitened"}, r"RECSAE_SAE_INPUT='whitened': cannot be"),
    ({"RECSAE_SAE_LOSS": "kl", "RECSAE_SAE_DENSE": "8"}, r"RECSAE_SAE_LOSS='kl': 'kl' needs RECSAE_SAE_INPUT=raw"),
    ({"RECSAE_SAE_LOSS": "kl", "RECSAE_SAE_INPUT": "whitened"}, r"'kl' needs"),
])
def test_sae_variant_settings_that_cannot_go_together(clean_env, env, message):
    for k, v in env.items():
        clean_env.setenv(k, v)
    with pytest.raises(config.ConfigError, match=message):
        config.load("ml-1m")


def test_valid_spellings_and_edge_values(clean_env):
    for text, want in (("1", True), ("TRUE", True), ("Yes", True), ("0", False), ("false", False), ("no", False)):
        clean_env.setenv("RECSAE_SAE_AUX_RELU", text)
        assert config.load("ml-1m").sae_aux_relu is want
    clean_env.setenv("RECSAE_SAE_K", "2048")                     # k = number of latents is allowed
    assert config.load("ml-1m").sae_k == 2048
    clean_env.setenv("RECSAE_NO_APT", "1")                       # documented non-field variables pass
    clean_env.setenv("RECSAE_SAE_EPOCHS", "0")
    assert config.load("ml-1m").sae_epochs == 0


def test_overrides_and_datasets(clean_env, tmp_path):
    with pytest.raises(config.ConfigError, match=r"sae_k=0: must lie in 1..sae_latents \(64\)"):
        config.load("ml-1m", "tiny", sae_k=0)                    # an override is named as a parameter
    with pytest.raises(config.ConfigError, match=r"'sae_kk' \(did you mean 'sae_k'\?\)"):
        config.load("ml-1m", sae_kk=3)
    assert config.load("ml-1m", sae_k="16").sae_k == 16          # papermill text is parsed like a variable
    with pytest.raises(config.ConfigError, match=r"dataset='movies': unknown dataset: not one of ml-1m, "):
        config.load("movies")
    (tmp_path / "MyReChorus").mkdir()                            # any ReChorus folder under the data dir
    clean_env.setenv("RECSAE_DATA_DIR", str(tmp_path))
    assert config.load("MyReChorus").dataset == "MyReChorus"


def test_pipeline_refuses_bad_settings_before_any_stage(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSAE_")}
    r = subprocess.run([sys.executable, "-m", "recsae_utils.pipeline", "ml-1m"], cwd=ROOT, capture_output=True,
                       text=True, env={**env, "PYTHONPATH": str(ROOT), "RECSAE_SAE_KK": "8",
                                       "RECSAE_RUN_ROOT": str(tmp_path / "runs")}, timeout=120)
    assert r.returncode == 2 and "RECSAE_SAE_KK='8': unknown setting; did you mean RECSAE_SAE_K?" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_sae_config_defaults_are_the_runs():
    run = config.RunConfig()
    pairs = {"n_latents": "sae_latents", "k": "sae_k", "aux_coef": "sae_aux_coef", "variant": "sae_variant",
             "dead_window": "sae_dead_window", "aux_relu": "sae_aux_relu", "lr": "sae_lr", "lr_decay": "sae_lr_decay",
             "l2": "sae_l2", "batch_size": "sae_batch_size", "seed": "seed", "loss": "sae_loss",
             "euclid": "sae_euclid", "input": "sae_input", "dense": "sae_dense"}
    assert {a: getattr(SAEConfig(), a) for a in pairs} == {a: getattr(run, b) for a, b in pairs.items()}
    # and a run never depends on them: stages.sae_config passes every field but early_stop (no run setting)
    call = next(n for n in ast.walk(ast.parse(inspect.getsource(stages.sae_config)))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "SAEConfig")
    # (and the BatchTopK/Matryoshka internals, whose defaults sae/model.py documents)
    internals = {"early_stop", "k_max", "threshold_beta", "prefixes"}
    assert {kw.arg for kw in call.keywords} == {f.name for f in dataclasses.fields(SAEConfig)} - internals


# ---------------------------------------------------------------------------------------------------
# atomic writes: mode and leftovers


def test_atomic_files_get_the_usual_mode_and_stale_temps_are_cleared(tmp_path):
    old = os.umask(0o022)
    try:
        p = artifacts.write_text(tmp_path / "a.txt", "x")
        assert p.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert artifacts.write_json(tmp_path / "b.json", {}).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    # what a SIGKILL during a write leaves: a 0-byte dot-file ending in .tmp
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".summary.json.ab12cd.tmp", tmp_path / "sub" / ".x.png.0000.tmp"]
    for s in stale:
        s.write_bytes(b"")
    (tmp_path / "keep.tmp").write_text("not ours")
    assert sorted(artifacts.remove_stale_temp(tmp_path)) == sorted(stale)
    assert not any(s.exists() for s in stale) and (tmp_path / "keep.tmp").exists() and p.exists()


def test_gitignore_covers_interrupted_writes():
    r = subprocess.run(["git", "check-ignore", "-q", "--no-index", "reports/ml-1m/.summary.json.k3j2.tmp"],
                       cwd=ROOT)
    assert r.returncode == 0


def test_ablations_are_opt_in(clean_env):
    """The reference-variant SAE and the window sweep run only with RECSAE_ABLATIONS=1."""
    assert list(stages.fit_plan(config.load("ml-1m"))) == ["main", "alt"]
    clean_env.setenv("RECSAE_ABLATIONS", "1")
    plan = stages.fit_plan(config.load("ml-1m"))
    assert plan["reference"] == (2048, 32, "reference") and list(plan)[:2] == ["main", "alt"]
    clean_env.setenv("RECSAE_SAE_VARIANT", "reference")
    assert stages.fit_plan(config.load("ml-1m"))["openai"] == (2048, 32, "openai")


def test_empty_locations_duplicate_and_huge_seeds_are_errors(clean_env, tmp_path):
    """RECSAE_DATA_DIR= (empty) was taken as unset and MovieLens was downloaded; RECSAE_SEEDS=0,0 became one
    seed; a seed of 10**20 passed and failed in stage 02."""
    for var in ("RECSAE_DATA_DIR", "RECSAE_RUN_ROOT", "RECSAE_REPORT_DIR", "RECSAE_CACHE_DIR"):
        clean_env.setenv(var, "  ")
        with pytest.raises(config.ConfigError, match=f"{var}='  ': set but empty"):
            config.load("ml-1m")
        clean_env.delenv(var)
    clean_env.setenv("RECSAE_SEEDS", "0,0")
    with pytest.raises(config.ConfigError, match=r"RECSAE_SEEDS=\[0, 0\]: names a seed twice"):
        config.load("ml-1m")
    clean_env.setenv("RECSAE_SEEDS", f"0,{10 ** 20}")
    with pytest.raises(config.ConfigError, match=r"seeds must lie in 0..4294967295"):
        config.load("ml-1m")
    clean_env.setenv("RECSAE_SEEDS", f"0,{2 ** 32 - 1}")
    assert config.load("ml-1m").seeds == [0, 2 ** 32 - 1]
    clean_env.setenv("RECSAE_SEED", str(2 ** 32))
    with pytest.raises(config.ConfigError, match=r"RECSAE_SEED=4294967296: seeds must lie"):
        config.load("ml-1m")
    clean_env.delenv("RECSAE_SEED")
    clean_env.setenv("RECSAE_SAE_SAMPLES", str(10 ** 30))
    with pytest.raises(config.ConfigError, match="RECSAE_SAE_SAMPLES=.*too large"):
        config.load("ml-1m")


def test_an_empty_data_folder_is_a_one_line_error(clean_env, tmp_path):
    """An existing but empty data folder ended `make all` in a 27-line traceback."""
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSAE_")}
    r = subprocess.run([sys.executable, "-m", "recsae_utils.pipeline", "ml-1m", "--profile", "tiny"], cwd=ROOT,
                       env={**env, "RECSAE_DATA_DIR": str(tmp_path / "empty"), "RECSAE_RUN_ROOT": str(tmp_path / "r"),
                            "RECSAE_REPORT_ROOT": str(tmp_path / "p"), "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == (f"recsae: bad input: {tmp_path / 'empty'}: holds neither "
                                                      "ml-1m/ratings.dat nor ml-1m.zip (RECSAE_DATA_DIR / data_dir)")
    assert "Traceback" not in r.stdout + r.stderr and not (tmp_path / "r").exists()
