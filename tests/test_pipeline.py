"""The pipeline: stage keys follow the code each notebook imports; a stage counts as done only when it
finished (a failed or SIGKILLed stage is redone, reports/ keeps the last good notebook); one run per run
folder; progress lines in the terminal. Then `make all` end to end on the tiny synthetic data, and again:
nothing is recomputed; a parameter of the last stage reruns that stage only."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from recsae_utils import config, pipeline

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------
# Stage keys from the code each notebook uses


def test_stage_code_follows_the_imports():
    mods = {nb.name[:2]: set(pipeline.code_hash(nb)[1]) for nb in pipeline.notebooks()}
    assert {s for s, m in mods.items() if "browser" in m} == {"05"}
    assert {s for s, m in mods.items() if "sae" in m} == {"03", "04", "05", "06", "07"}      # through stages
    assert {s for s, m in mods.items() if "sae.fit" in m} == {"03", "04", "05", "06", "07"}  # a package's modules
    assert {s for s, m in mods.items() if "figures.concepts" in m} == {"05", "06", "07"}
    assert {s for s, m in mods.items() if "data" in m} == {"01", "02", "03", "04", "05", "06", "07"}
    assert {s for s, m in mods.items() if "yardstick" in m} == {"05", "06", "07"}   # browser, concepts, comparison
    assert {"labeling", "figures"} <= mods["05"]                                 # imports inside functions
    assert "pipeline" not in set().union(*mods.values())


def test_stage_keys_change_only_where_the_code_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path))
    cfg = config.load("ml-1m", "tiny")
    nbs = pipeline.notebooks()
    base = pipeline.stage_keys(cfg, nbs)

    def edited(module):  # a file below the package, e.g. "sae/fit.py"
        def read(path):
            text = path.read_text(encoding="utf-8")
            return text + "\n# edited\n" if path.relative_to(pipeline.PACKAGE_DIR).as_posix() == module else text
        return pipeline.stage_keys(cfg, nbs, read)

    def changed(keys):
        return {n[:2] for n in keys if keys[n] != base[n]}

    assert changed(edited("browser.py")) == {"05", "06", "07"}                 # and the stages after it
    assert changed(edited("sae/fit.py")) == {"03", "04", "05", "06", "07"}     # a module inside a package
    assert changed(edited("sae/__init__.py")) == {"03", "04", "05", "06", "07"}
    assert changed(edited("stages/evaluate.py")) == {"03", "04", "05", "06", "07"}
    assert changed(edited("figures/concepts.py")) == {"05", "06", "07"}        # not the figures of 01-04
    assert changed(edited("train.py")) == {"02", "03", "04", "05", "06", "07"}
    assert changed(edited("config.py")) == {"01", "02", "03", "04", "05", "06", "07"}
    assert changed(edited("faithfulness.py")) == {"07"}
    assert changed(edited("pipeline.py")) == set()
    assert pipeline.stage_keys(cfg, nbs) == base                                 # stable


def test_imports_inside_functions_and_relative_forms():
    src = ("import recsae_utils.sae as s\nfrom recsae_utils.train import x\nfrom recsae_utils import data, config\n"
           "def f():\n    from recsae_utils import browser\n")
    assert pipeline.module_imports(src, "nb", in_package=False) == {"__init__", "sae", "train", "data", "config",
                                                                    "browser"}
    rel = "from . import artifacts\nfrom .metrics import TOPK\ndef g():\n    from . import labeling, sae as m\n"
    assert pipeline.module_imports(rel, "mod", in_package=True) == {"__init__", "artifacts", "metrics", "labeling",
                                                                    "sae"}
    assert pipeline.module_imports(rel, "nb", in_package=False) == {"__init__"}         # a notebook has no package
    inner = "from .. import artifacts\nfrom ..metrics import TOPK\nfrom .model import TopKSAE\nfrom . import losses\n"
    assert pipeline.module_imports(inner, "sae/fit.py", in_package=True, package=("sae",)) == {
        "__init__", "artifacts", "metrics", "sae.model", "sae.losses"}
    sub = "from recsae_utils.figures import training as figures\nfrom recsae_utils.sae import fit_sae\n"
    assert pipeline.module_imports(sub, "nb", in_package=False) == {"__init__", "figures.training", "sae"}
    assert "figures" in pipeline.module_closure({"figures.training"})               # its package runs first
    assert pipeline.module_closure({"sae.fit"}) >= {"sae", "sae.fit", "sae.model", "checkpoints", "artifacts"}
    assert pipeline.module_path("sae") == pipeline.PACKAGE_DIR / "sae" / "__init__.py"
    assert pipeline.module_name(pipeline.module_path("sae.fit")) == "sae.fit"


# ---------------------------------------------------------------------------------------------------
# A stage counts only when it finished; one run per folder (on two quick stand-in notebooks)

STAGE_A = ("from recsae_utils import config\ncfg = config.load(dataset, profile)\n(cfg.run_dir / 'a.txt').write_text('a')\n"
           "m = cfg.run_dir / 'model' / 'a.safetensors'\nm.parent.mkdir(exist_ok=True)\nm.write_bytes(b'weights of a')")
STAGE_B = """import time
from recsae_utils import config, progress
cfg = config.load(dataset, profile)
progress.step("step 1/2")
control = cfg.run_dir.parent / "control"   # outside the run folder, which --force clears
mode = control.read_text() if control.exists() else ""
if mode == "fail":
    raise RuntimeError("stage b was asked to fail")
if mode == "degraded":  # finished, but recorded undone work (as the concept stage does for failed labels)
    from recsae_utils import reports
    reports.update_summary(cfg.report_dir, "stage_b", {"degraded": ["labels: 3 of 58 labels failed (http_500: 3)"]})
elif mode == "nan":     # finished, with a diverged model's headline numbers
    from recsae_utils import reports
    reports.update_summary(cfg.report_dir, "sasrec", {"test": {"NDCG@10": float("nan"), "HR@10": 0.5}})
else:
    from recsae_utils import reports
    reports.update_summary(cfg.report_dir, "stage_b", {"ok": True})
if mode == "hang":
    (cfg.run_dir / "hanging").write_text("1")
    time.sleep(300)
progress.step("step 2/2")
print("stage b finished")"""


def write_notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, code in (("01_a", STAGE_A), ("02_b", STAGE_B)):
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
        nb.cells = [nbformat.v4.new_code_cell('dataset = "ml-1m"\nprofile = ""', metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


@pytest.fixture()
def small_run(tmp_path, tiny_root, monkeypatch):
    for k in list(os.environ):
        if k.startswith("RECSAE_"):
            monkeypatch.delenv(k)
    env = {"RECSAE_DATA_DIR": str(tiny_root), "RECSAE_RUN_ROOT": str(tmp_path / "runs"),
           "RECSAE_REPORT_ROOT": str(tmp_path / "reports"), "RECSAE_PROFILE": "tiny", "PYTHONPATH": str(ROOT)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return write_notebooks(tmp_path / "nbs"), tmp_path / "runs" / "ml-1m", tmp_path / "reports" / "ml-1m" / "notebooks"


def test_failed_stage_is_redone_and_reports_keep_the_good_notebook(small_run):
    nbs, run, rep = small_run
    log: list[str] = []
    rows = pipeline.run_dataset("ml-1m", notebook_dir=nbs, log=log.append)
    assert [r["status"] for r in rows] == ["ran", "ran"]
    assert "[ml-1m] 02 · step 1/2" in log and "[ml-1m] 02 · step 2/2" in log      # progress, line by line
    good = (rep / "02_b.ipynb").read_text()
    assert "stage b finished" in good
    (run.parent / "control").write_text("fail")
    with pytest.raises(pipeline.StageFailed, match=r"02_b.ipynb \(executed copy: .*failed/02_b.ipynb") as e:
        pipeline.run_dataset("ml-1m", force=True, notebook_dir=nbs, log=log.append)
    assert "RuntimeError: stage b was asked to fail" in str(e.value)
    assert "asked to fail" in (run / "failed" / "02_b.ipynb").read_text()
    assert (rep / "02_b.ipynb").read_text() == good                              # the last good one stays
    assert "02_b.ipynb" not in json.loads((run / "stages.json").read_text())
    (run.parent / "control").unlink()
    rows = pipeline.run_dataset("ml-1m", notebook_dir=nbs, log=log.append)
    assert [r["status"] for r in rows] == ["reused", "ran"]                      # same key, but never finished
    assert [r["status"] for r in pipeline.run_dataset("ml-1m", notebook_dir=nbs, log=log.append)] == ["reused"] * 2


def test_degraded_stage_exits_non_zero_and_is_redone(small_run):
    """A stage that finished with undone work (failed LLM labels) says so on the console, makes the run exit
    3, and is not recorded as done, so a plain rerun redoes it; once clean, it counts as done."""
    nbs, run, rep = small_run
    run.mkdir(parents=True, exist_ok=True)
    (run.parent / "control").write_text("degraded")
    p = _pipeline(nbs)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 3, out + err
    assert "02_b.ipynb: DEGRADED: labels: 3 of 58 labels failed" in out and "finished degraded" in err
    assert "02_b.ipynb" not in json.loads((run / "stages.json").read_text())
    (run.parent / "control").unlink()
    rows = pipeline.run_dataset("ml-1m", notebook_dir=nbs, log=lambda _: None)
    assert [r["status"] for r in rows] == ["reused", "ran"]
    assert [r["status"] for r in pipeline.run_dataset("ml-1m", notebook_dir=nbs, log=lambda _: None)] == ["reused"] * 2


def _pipeline(nbs: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "recsae_utils.pipeline", "ml-1m", "--notebooks", str(nbs)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.2)


def test_killed_stage_is_redone_and_a_second_run_is_refused(small_run):
    nbs, run, rep = small_run
    run.mkdir(parents=True)
    (run.parent / "control").write_text("hang")
    first = _pipeline(nbs, start_new_session=True)
    try:
        _wait_for(run / "hanging", first)
        second = _pipeline(nbs)                                                  # same run folder, meanwhile
        out, err = second.communicate(timeout=120)
        assert second.returncode != 0 and f"is in use by pid {first.pid} (" in err and "recsae_utils.pipeline" in err
        assert (run / "hanging").exists() and first.poll() is None
        assert not list(nbs.glob("kernel-ipc*"))                                # sockets in a folder of the run's own
        kernel_dirs = list(Path(tempfile.gettempdir()).glob(f"{pipeline.KERNEL_DIR_PREFIX}{first.pid}-*"))
        assert len(kernel_dirs) == 1 and (kernel_dirs[0] / "kernel.json").exists()
    finally:
        os.killpg(first.pid, signal.SIGKILL)                                     # the run and its kernel
        first.wait()
    assert not list(nbs.glob("kernel-ipc*"))
    state = json.loads((run / "stages.json").read_text())                        # still consistent
    assert "01_a.ipynb" in state and "02_b.ipynb" not in state
    assert not (rep / "02_b.ipynb").exists()
    (run.parent / "control").unlink()
    out, err = _pipeline(nbs).communicate(timeout=300)
    assert "| ml-1m | 01_a | reused |" in out and "| ml-1m | 02_b | ran |" in out, out + err
    assert "[ml-1m] 02 · step 2/2" in out
    assert "without encryption" not in err, err                                  # no kernel warning noise
    assert not kernel_dirs[0].exists()                                           # the killed run's, cleared


def test_several_models_run_in_turn_into_their_folders_and_are_compared(small_run, tmp_path, monkeypatch, capsys):
    """RECSAE_MODELS=sasrec,bprmf: every stage once per model, each into its own run and report folders as
    RECSAE_MODEL would, then one table per dataset from the models' summaries (no summary: its own row)."""
    nbs, run, _ = small_run
    monkeypatch.setenv("RECSAE_MODELS", "sasrec,bprmf")
    assert pipeline.main(["ml-1m", "--notebooks", str(nbs)]) == 0
    rep = tmp_path / "reports" / "ml-1m"
    for folder in (run, run / "bprmf"):
        assert (folder / "a.txt").exists() and set(json.loads((folder / "stages.json").read_text())) == {"01_a.ipynb", "02_b.ipynb"}
    assert (rep / "notebooks" / "02_b.ipynb").exists() and (rep / "bprmf" / "notebooks" / "02_b.ipynb").exists()
    record = json.loads((rep / "bprmf" / "run.json").read_text())
    assert record["config"]["model"] == "bprmf" and "RECSAE_MODEL=bprmf" in record["command"]
    assert "RECSAE_MODELS" not in record["command"]                      # the command that remakes this report
    assert json.loads((rep / "run.json").read_text())["config"]["model"] == "sasrec"
    cmp = json.loads((rep / "models.json").read_text())
    assert {r["model"]: r["status"] for r in cmp["rows"]} == {"sasrec": "partial", "bprmf": "partial",
                                                              "gru4rec": "missing", "lightgcn": "missing"}
    assert "GRU4Rec (no summary" in (rep / "models.md").read_text()
    assert "[models.md](models.md)" in (rep / "README.md").read_text() and not (rep / "bprmf" / "models.md").exists()
    out = capsys.readouterr().out
    assert "| ml-1m sasrec | 02_b | ran |" in out and "| ml-1m bprmf | 02_b | ran |" in out
    assert os.environ["RECSAE_MODELS"] == "sasrec,bprmf" and "RECSAE_MODEL" not in os.environ   # restored
    monkeypatch.delenv("RECSAE_MODELS")
    pipeline.run_dataset("ml-1m", force=True, notebook_dir=nbs, log=lambda _: None)   # SASRec's --force
    assert (run / "bprmf" / "a.txt").exists() and (run / "bprmf" / "stages.json").exists()   # not another model's run


@pytest.mark.parametrize("env, message", [
    ({"RECSAE_MODELS": "sasrec,gru4rec", "RECSAE_MODEL": "bprmf"},
     "RECSAE_MODEL='bprmf' and RECSAE_MODELS='sasrec,gru4rec': set one"),
    ({"RECSAE_MODELS": "sasrec,gru4recc"},
     "RECSAE_MODELS='sasrec,gru4recc': unknown model 'gru4recc'; choose from sasrec, gru4rec, bprmf, lightgcn"),
    ({"RECSAE_MODELS": " , "}, "RECSAE_MODELS=' , ': names no model"),
    ({"RECSAE_MODELS": "bprmf,bprmf"}, "RECSAE_MODELS='bprmf,bprmf': names a model twice"),
])
def test_a_bad_model_list_stops_before_stage_01(small_run, monkeypatch, capsys, env, message):
    nbs, run, _ = small_run
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert pipeline.main(["ml-1m", "--notebooks", str(nbs)]) == 2
    assert message in capsys.readouterr().err
    assert not (run / "a.txt").exists() and not (run / "bprmf").exists()


def test_lock_names_the_other_process(tmp_path):
    code = ("import sys, time; from pathlib import Path; from recsae_utils import pipeline\n"
            "with pipeline.run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=f"in use by pid {holder.pid} \\(-c {tmp_path}\\)"):
            with pipeline.run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with pipeline.run_lock(tmp_path):                                            # released with its process
        assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()


# ---------------------------------------------------------------------------------------------------
# The real notebooks


@pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "python").exists(),
                    reason="needs make and the project's .venv (created by `make test`)")
def test_make_all_then_rerun_reuses_everything(tmp_path, tiny_root):
    env = {**os.environ, "RECSAE_DATA_DIR": str(tiny_root), "RECSAE_RUN_DIR": str(tmp_path / "runs"),
           "RECSAE_REPORT_DIR": str(tmp_path / "reports"), "OPENAI_API_KEY": "", "MPLBACKEND": "Agg",
           "RECSAE_ABLATIONS": "1"}  # the opt-in comparisons too (the notebook test covers the default path)

    def make_all(extra_env=None):
        t0 = time.time()
        r = subprocess.run(["make", "all", "DATASETS=ml-1m", "PROFILE=tiny"], cwd=ROOT, env={**env, **(extra_env or {})},
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "without encryption" not in r.stderr, r.stderr[-3000:]
        return r.stdout, time.time() - t0

    out1, _ = make_all()
    assert "[ml-1m] 02 · SASRec seed 0 epoch   1/4 loss" in out1 and "[ml-1m] 03 · SAE 64 latents k=4 openai: sae epoch" in out1
    rep = tmp_path / "reports" / "ml-1m"
    summary = json.loads((rep / "summary.json").read_text())
    for section in ("data", "sasrec", "recsae", "sae", "concepts", "interventions"):
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
    assert "**SAE against the raw dimensions**" in (rep / "detection.md").read_text()
    assert (rep / "concept_browser.html").exists()
    assert len(list((rep / "notebooks").glob("*.ipynb"))) == 7
    assert "| ml-1m | 05_label_concepts | ran |" in out1 and "| ml-1m | 07_yardstick | ran |" in out1
    y = summary["yardstick"]
    assert y["n_concepts"] > 0 and {"diffmean", "sae_out", "random"} <= set(y["median_gain"]["target"])
    assert (rep / "concepts" / "yardstick.csv").exists() and (rep / "figures" / "yardstick_tradeoff.png").exists()
    assert "## How the concepts compare" in (rep / "README.md").read_text()
    iv = summary["interventions"]
    assert set(iv["models"]) == {"SAE", "raw h_u dimensions", "random SAE"} and len(iv["steering_card"]["after"]) == 10
    assert "## Interventions" in (rep / "README.md").read_text() or not iv["models"]["SAE"]["n_units"]

    out2, secs = make_all()
    assert out2.count("| reused |") == 7 and "| ran |" not in out2, out2
    assert secs < 60

    out3, _ = make_all({"RECSAE_TOP_N": "5"})  # a stage-05 parameter: only that stage reruns
    assert "| ml-1m | 04_evaluate | reused |" in out3 and "| ml-1m | 05_label_concepts | ran |" in out3
    assert "| ml-1m | 06_interventions | ran |" in out3 and "| ml-1m | 07_yardstick | ran |" in out3


def test_every_sae_family_runs_every_stage_and_a_family_change_reruns_its_stages(tmp_path, tiny_root, monkeypatch):
    """BatchTopK codes have a variable number of active latents; a code's width used to follow the batch's
    most active row, so dev and test codes differed in width and stage 05 crashed. And sae_family was in no
    stage key: switching the family reused every stage and reported the old family's results."""
    for k in list(os.environ):
        if k.startswith("RECSAE_"):
            monkeypatch.delenv(k)
    for k, v in {"RECSAE_DATA_DIR": str(tiny_root), "RECSAE_RUN_ROOT": str(tmp_path / "runs"), "MPLBACKEND": "Agg",
                 "RECSAE_REPORT_ROOT": str(tmp_path / "reports"), "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": ""}.items():
        monkeypatch.setenv(k, v)
    rep = tmp_path / "reports" / "ml-1m"
    for family, ran in (("batchtopk", ["01", "02", "03", "04", "05", "06", "07"]),
                        ("matryoshka", ["03", "04", "05", "06", "07"])):
        monkeypatch.setenv("RECSAE_SAE_FAMILY", family)
        rows = pipeline.run_dataset("ml-1m", "tiny", log=lambda _: None)
        assert [r["stage"][:2] for r in rows if r["status"] == "ran"] == ran, (family, rows)
        summary = json.loads((rep / "summary.json").read_text())
        assert summary["sae"]["main"]["config"]["family"] == family
        assert summary["sae_fit"]["main"]["config"]["family"] == family
        assert json.loads((rep / "run.json").read_text())["config"]["sae_family"] == family
        assert summary["concepts"]["n_latents"] == 64 and "steering_card" in summary["interventions"]


# ---------------------------------------------------------------------------------------------------
# Issue 20: no silent wrong results


def test_stage_fields_are_derived_from_the_code_each_stage_runs(monkeypatch, tmp_path):
    """The hand list STAGE_FIELDS missed sae_family, ablations and dict_rows: changing them reused every stage."""
    fields = {nb.name[:2]: set(pipeline.stage_fields(nb)) for nb in pipeline.notebooks()}
    assert fields["01"] == {"dataset", "profile", "history_max"}
    assert {"sae_family", "ablations", "dict_rows", "sae_k", "sae_variant"} <= fields["03"] and "top_n" not in fields["04"]
    assert {"top_n", "item_pool", "labeler", "llm_model", "llm_time_limit"} <= fields["05"]
    assert not {"run_root", "report_root", "data_dir"} & set().union(*fields.values())   # where files live
    nb = pipeline.NOTEBOOK_DIR / "03_fit_sae.ipynb"                    # a new read in a module the stage runs counts
    read = lambda p: p.read_text() + ("\ndef f(cfg):\n    return cfg.top_n\n" if p.parts[-2:] == ("sae", "fit.py") else "")
    assert "top_n" in pipeline.stage_fields(nb, read)
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path))
    nbs = pipeline.notebooks()
    base = pipeline.stage_keys(config.load("ml-1m", "tiny"), nbs)
    for var, value, changed in (("RECSAE_SAE_FAMILY", "batchtopk", "03"), ("RECSAE_DICT_ROWS", "7", "03"),
                                ("RECSAE_ABLATIONS", "1", "03"), ("RECSAE_TOP_N", "3", "05")):
        monkeypatch.setenv(var, value)
        keys = pipeline.stage_keys(config.load("ml-1m", "tiny"), nbs)
        monkeypatch.delenv(var)
        assert {n[:2] for n in keys if keys[n] != base[n]} == {s for s in ("01", "02", "03", "04", "05", "06", "07")
                                                                if s >= changed}


def test_a_changed_checkpoint_reruns_the_stages_that_saw_it_and_force_starts_afresh(small_run):
    """A finished stage records the checkpoints in the run folder; one replaced or damaged since (a torchrun
    job, a copy) reruns that stage and every later one. --force clears the run folder but the LLM cache."""
    nbs, run, rep = small_run
    run_ = lambda **kw: [r["status"] for r in pipeline.run_dataset("ml-1m", notebook_dir=nbs, log=lambda _: None, **kw)]
    assert run_() == ["ran", "ran"] and run_() == ["reused", "reused"]
    (run / "model" / "a.safetensors").write_bytes(b"weights of a, damaged")
    assert run_() == ["ran", "ran"] and (run / "model" / "a.safetensors").read_bytes() == b"weights of a"
    (run / "model" / "b.safetensors").write_bytes(b"appeared later")            # not seen by a finished stage
    assert run_() == ["reused", "reused"]
    for f in ("labels/llm_cache/ab12.json", "labels/llm_cache/token_ledger.json", "labels/offline/labels.csv",
              "sasrec/seed0/done.json", "hu/train.npy"):
        (run / f).parent.mkdir(parents=True, exist_ok=True)
        (run / f).write_text("x")
    assert run_(force=True) == ["ran", "ran"]
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == [".lock", "a.txt", "labels/llm_cache/ab12.json", "labels/llm_cache/token_ledger.json",
                    "model/a.safetensors", "stages.json"]
    (run / "reports" / "x.md").parent.mkdir()                                    # a report folder inside it is kept
    (run / "reports" / "x.md").write_text("report")
    assert pipeline.clear_run_folder(run, also_keep=(run / "reports",)) == [
        Path(p) for p in ("a.txt", "executing", "model", "stages.json")]
    assert (run / "reports" / "x.md").exists() and (run / "labels" / "llm_cache" / "ab12.json").exists()


def test_changed_checkpoints_known_answers():
    """A later stage may rewrite what an earlier one recorded (an SAE refitted at another lr in the same
    folder): only a file that differs from its latest record counts, so a plain rerun then reuses all."""
    state = {"02_b.ipynb": {"key": "k2", "checkpoints": {"s": "1", "a": "old"}},
             "03_c.ipynb": {"key": "k3", "checkpoints": {"s": "1", "a": "new", "b": "2"}}, "04_d.ipynb": "old-format"}
    assert pipeline.changed_checkpoints(state, {"s": "1", "a": "new", "b": "2", "later": "9"}) == set()
    assert pipeline.changed_checkpoints(state, {"s": "X", "a": "new"}) == {"s", "b"}   # replaced, and deleted


def test_a_stage_with_nonfinite_headline_numbers_is_not_done(small_run):
    """A diverged model scored NDCG 1.0 and its stages were recorded done; now a NaN headline fails the stage."""
    nbs, run, rep = small_run
    run.mkdir(parents=True)
    (run.parent / "control").write_text("nan")
    with pytest.raises(pipeline.StageFailed, match=r"(?s)02_b.ipynb \(executed copy: .*failed/02_b.ipynb.*not finite: "
                                                   r"sasrec.test.NDCG@10 = nan"):
        pipeline.run_dataset("ml-1m", notebook_dir=nbs, log=lambda _: None)
    assert "02_b.ipynb" not in json.loads((run / "stages.json").read_text()) and not (rep / "02_b.ipynb").exists()
    assert pipeline.nonfinite_headlines({"sae": {"main": {"health": {"fvu": float("inf")}}, "alt": {"x": float("nan")}},
                                         "concepts": {"y": float("nan")}}) == ["sae.main.health.fvu = inf"]


def test_the_lock_file_never_follows_a_symlink(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(target)
    with pytest.raises(SystemExit, match=r"\.lock: cannot open the lock file .*not a symlink"):
        with pipeline.run_lock(tmp_path / "run"):
            pass
    assert target.read_text() == "keep me"
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / ".lock")
    with pytest.raises(SystemExit, match="not a regular file"):
        with pipeline.run_lock(tmp_path / "fifo"):
            pass


def test_two_runs_with_one_report_folder_are_refused(tmp_path, monkeypatch):
    """Two runs with their own run folders but one report folder both exited 0 with a report of mixed
    results, and each could delete the other's temp files there."""
    monkeypatch.setenv("RECSAE_REPORT_ROOT", str(tmp_path / "reports"))
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path / "a"))
    cfg_a = config.load("ml-1m", "tiny")
    with pipeline.dataset_locks(cfg_a):
        live = cfg_a.report_dir / ".summary.json.x1.tmp"                      # the first run's write in progress
        live.write_text("{")
        monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path / "b"))
        with pytest.raises(SystemExit, match=f"(?s){cfg_a.report_dir} is in use by pid {os.getpid()}.*One run per report "
                                             "folder.*RECSAE_REPORT_ROOT"):
            pipeline.run_dataset("ml-1m", "tiny", log=lambda _: None)
        assert live.exists()
    monkeypatch.setenv("RECSAE_REPORT_ROOT", str(tmp_path / "b"))               # report folder = run folder: one lock
    with pipeline.dataset_locks(config.load("ml-1m", "tiny")):
        pass


def test_kernels_keep_their_sockets_out_of_the_shared_working_directory(small_run, tmp_path):
    """Every kernel's IPC sockets were kernel-ipc-N in notebooks/, the working directory of every run: two
    runs started together took the same sockets, and killed runs left them behind. Two runs of one checkout
    started at the same moment now both finish."""
    nbs, run, rep = small_run
    env = {**os.environ}
    procs = []
    for name in ("x", "y"):
        e = {**env, "RECSAE_RUN_ROOT": str(tmp_path / name / "runs"), "RECSAE_REPORT_ROOT": str(tmp_path / name / "rep")}
        procs.append(subprocess.Popen([sys.executable, "-m", "recsae_utils.pipeline", "ml-1m", "--notebooks", str(nbs)],
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "| ml-1m | 02_b | ran |" in out, out + err
    assert not list(nbs.glob("kernel-ipc*")) and not list(Path.cwd().glob("kernel-ipc*"))


def test_a_failed_stage_keeps_only_a_whole_executed_copy(tmp_path):
    """papermill writes the executed notebook in place: after a disk-full its failed/ copy was cut short."""
    tmp_nb, failed = tmp_path / "executing" / "02_b.ipynb", tmp_path / "failed" / "02_b.ipynb"
    tmp_nb.parent.mkdir()
    tmp_nb.write_text('{"cells": [{"cell_type": "code", "sou')
    assert "cut short" in pipeline.keep_failed(tmp_nb, failed) and not failed.exists() and not tmp_nb.exists()
    tmp_nb.write_text('{"cells": []}')
    assert pipeline.keep_failed(tmp_nb, failed) == f"executed copy: {failed}" and failed.read_text() == '{"cells": []}'


def test_run_record_and_report_hold_no_credentials(tmp_path, monkeypatch):
    """OPENAI_BASE_URL=http://alice:S3CRETPASS@host was written as given to run.json and the report README,
    even with the offline labeler."""
    from recsae_utils import reports

    monkeypatch.setenv("OPENAI_BASE_URL", "http://alice:S3CRETPASS@llm.example:8000/v1")
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path / "runs"))
    monkeypatch.setenv("RECSAE_REPORT_ROOT", str(tmp_path / "reports"))
    cfg = config.load("ml-1m", "tiny")
    pipeline.write_run_record(cfg, [])
    reports.write_report(cfg.report_dir)
    for name in ("run.json", "README.md"):
        text = (cfg.report_dir / name).read_text()
        assert "OPENAI_BASE_URL=http://<redacted>@llm.example:8000/v1" in text and "S3CRET" not in text, name
        assert "alice" not in text, name
