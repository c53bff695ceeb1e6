"""benchmarks/bench_vs_rechorus.py without ReChorus: the files it writes are what ReChorus's readers take
(tab-separated, the three columns, ids 1..N, rows that SeqReader's join on (user_id, item_id, time) maps
one to one), its parser reads ReChorus's epoch lines, and its report section replaces only itself."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsae_utils import artifacts, data, models

_spec = importlib.util.spec_from_file_location(
    "bench_vs_rechorus", artifacts.repo_root() / "benchmarks" / "bench_vs_rechorus.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_written_files_are_what_rechorus_reads(tiny_ds, tiny_inst, tmp_path):
    folder = bench.write_rechorus_dataset(tiny_ds, tmp_path / "ML_1MTOPK")
    parts = {}
    for s in ("train", "dev", "test"):
        text = (folder / f"{s}.csv").read_text()
        assert text.splitlines()[0] == "user_id\titem_id\ttime"
        # ReChorus BaseReader: pd.read_csv(sep='\t'), then eval of string columns: there must be none
        df = pd.read_csv(folder / f"{s}.csv", sep="\t")
        assert list(df.columns) == ["user_id", "item_id", "time"]
        assert all(pd.api.types.is_integer_dtype(df[c]) for c in df.columns)
        assert df.equals(tiny_ds.split(s)[["user_id", "item_id", "time"]].reset_index(drop=True))
        parts[s] = df
    all_df = pd.concat(parts.values())
    # n_items = max id + 1 with 0 left for padding, as ReChorus computes it and as our model sizes its table
    assert all_df.user_id.min() == 1 and all_df.item_id.min() == 1
    assert all_df.item_id.max() + 1 == tiny_ds.n_items and all_df.user_id.max() + 1 == tiny_ds.n_users
    # SeqReader merges each split with the position table on (user_id, item_id, time): a duplicated key
    # would multiply rows; every dev/test user and item must be in train (its clicked sets assume so)
    assert not all_df.duplicated(["user_id", "item_id", "time"]).any()
    assert set(parts["dev"].user_id) | set(parts["test"].user_id) <= set(parts["train"].user_id)
    assert set(parts["dev"].item_id) | set(parts["test"].item_id) <= set(parts["train"].item_id)
    # and our own reader of ReChorus folders gets the same instances back
    back = data.build_instances(data.load_rechorus(folder))
    for s in ("train", "dev", "test"):
        assert np.array_equal(back[s].hist, tiny_inst[s].hist) and np.array_equal(back[s].item, tiny_inst[s].item)


LOG = """INFO:root:Optimizer: Adam
INFO:root:Epoch 1     loss=0.6517 [52.5 s]	dev=(HR@5:0.0367,NDCG@5:0.0221) [6.1 s] *
Epoch 2     loss=0.4930 [58.1 s]	dev=(HR@5:0.0431,NDCG@5:0.0265) [5.8 s] *
Epoch 10    loss=0.3012 [101.0 s]	dev=(HR@5:0.0000,NDCG@5:0.0000) [5.0 s]
Best Iter(dev)=    2	 dev=(HR@5:0.0431,NDCG@5:0.0265) [123.4 s]
"""


def test_parses_rechorus_epoch_lines():
    rows = bench.parse_rechorus_log(LOG)
    assert [r["epoch"] for r in rows] == [1, 2, 10]
    assert [r["train_seconds"] for r in rows] == [52.5, 58.1, 101.0]
    assert [r["loss"] for r in rows] == [0.6517, 0.4930, 0.3012]
    assert rows[1]["dev"] == {"HR@5": 0.0431, "NDCG@5": 0.0265}
    assert bench.parse_rechorus_log("Best Iter(dev)=    2\t dev=(HR@5:0.04) [1.0 s]") == []


@pytest.mark.parametrize("existing", [None, "# Benchmarks\n\n## A\nkeep a\n",
                                      "# Benchmarks\n\n## SASRec vs ReChorus\nold\n\n## B\nkeep b\n"])
def test_section_replaces_only_itself(tmp_path, existing):
    heading = "## SASRec vs ReChorus"
    p = tmp_path / "benchmarks.md"
    if existing is not None:
        p.write_text(existing)
    for body in ("first", "second"):
        bench.upsert_section(p, f"{heading}\n\n{body}\n")
    text = p.read_text()
    assert text.count(heading) == 1 and "second" in text and "first" not in text and "old" not in text
    assert text.startswith("# Benchmarks")
    for keep in ("keep a", "keep b"):
        assert (keep in text) == (existing is not None and keep in existing)
    if existing and "## B" in existing:
        assert text.index(heading) < text.index("## B")


# ---------------------------------------------------------------------------------------------------
# Issue 24: every model, Grocery, parity

# ReChorus's own run lines (docs/demo_scripts_results/Topk_Amazon.sh at e58d752): the settings our models follow
SCRIPT = {
    "sasrec": "--model_name SASRec --emb_size 64 --num_layers 1 --num_heads 1 --lr 1e-4 --l2 1e-6 --history_max 20",
    "gru4rec": "--model_name GRU4Rec --emb_size 64 --hidden_size 100 --lr 1e-3 --l2 1e-4 --history_max 20",
    "bprmf": "--model_name BPRMF --emb_size 64 --lr 1e-3 --l2 1e-6",
    "lightgcn": "--model_name LightGCN --emb_size 64 --n_layers 3 --lr 1e-3 --l2 1e-8",
}


def _flags(cmd: list[str]) -> dict[str, str]:
    args = cmd[cmd.index("main.py") + 1:]
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    return dict(zip(args[::2], args[1::2]))


@pytest.mark.parametrize("model", list(SCRIPT))
@pytest.mark.parametrize("dataset", ["ml-1m", "grocery"])
def test_rechorus_command_carries_the_models_settings(tiny_ds, tmp_path, model, dataset):
    cfg = models.model_config(model, tiny_ds)
    settings = bench.train_settings(model)
    parity = _flags(bench.rechorus_command("py", model, cfg, settings, tmp_path, dataset, tmp_path, seed=2,
                                           workers=0))
    script = _flags(["main.py", *SCRIPT[model].split()])
    for flag, value in script.items():  # every setting of ReChorus's script, same value
        if flag in ("--lr", "--l2"):
            assert float(parity[flag]) == float(value), flag
        else:
            assert parity[flag] == value, flag
    # model flags beyond the script's are only the shared ones, and batch sizes are BaseRunner's 256
    assert parity["--batch_size"] == parity["--eval_batch_size"] == "256"
    assert parity["--test_all"] == "1" and parity["--topk"] == "5,10,20,50" and parity["--metric"] == "NDCG,HR"
    assert parity["--random_seed"] == "2" and parity["--num_workers"] == "0" and parity["--gpu"] == ""
    assert parity["--dataset"] == {"ml-1m": "ML_1MTOPK", "grocery": "Grocery_and_Gourmet_Food"}[dataset]
    # parity leaves ReChorus's own epoch cap and patience; speed runs a fixed number of epochs
    assert "--epoch" not in parity and "--early_stop" not in parity
    speed = _flags(bench.rechorus_command("py", model, cfg, settings, tmp_path, dataset, tmp_path, 0, 5,
                                          epochs=3, early_stop=0))
    assert speed["--epoch"] == "3" and speed["--early_stop"] == "0"
    # and our side trains with the same lr / l2 (the pipeline's defaults for the model)
    assert (settings["lr"], settings["l2"]) == (float(script["--lr"]), float(script["--l2"]))


def test_the_sasrec_command_is_the_one_the_speed_section_was_measured_with(tiny_ds, tmp_path):
    cmd = bench.rechorus_command("py", "sasrec", models.model_config("sasrec", tiny_ds),
                                 bench.train_settings("sasrec"), tmp_path / "data", "ml-1m", tmp_path, 1, 5,
                                 epochs=3, early_stop=0)
    assert cmd[:2] == ["py", "main.py"]
    assert _flags(cmd) == {
        "--model_name": "SASRec", "--emb_size": "64", "--num_layers": "1", "--num_heads": "1",
        "--history_max": "20", "--lr": "0.0001", "--l2": "1e-06", "--batch_size": "256",
        "--eval_batch_size": "256", "--epoch": "3", "--early_stop": "0", "--test_all": "1",
        "--topk": "5,10,20,50", "--metric": "NDCG,HR", "--num_workers": "5", "--random_seed": "1", "--gpu": "",
        "--save_final_results": "0", "--path": str(tmp_path / "data"), "--dataset": "ML_1MTOPK",
        "--log_file": str(tmp_path / "rechorus.log"), "--model_path": str(tmp_path / "rechorus_model.pt")}


# main.py's log file, in its exact format: logging's 'INFO:root:' prefix, os.linesep before the final lines,
# utils.format_metric's order (top-k ascending, then metric names sorted)
FINAL_LOG = """INFO:root:Test Before Training: (HR@5:0.0051,NDCG@5:0.0030,HR@10:0.0102,NDCG@10:0.0046,HR@20:0.0210,NDCG@20:0.0073,HR@50:0.0520,NDCG@50:0.0133)
INFO:root:Optimizer: Adam
INFO:root:Epoch 1     loss=0.6931 [12.0 s]	dev=(HR@5:0.2001,NDCG@5:0.1402) [30.5 s] *
INFO:root:Epoch 2     loss=0.5012 [10.5 s]	dev=(HR@5:0.2501,NDCG@5:0.1702) [29.0 s] *
INFO:root:Epoch 3     loss=0.4011 [11.0 s]	dev=(HR@5:0.2401,NDCG@5:0.1652) [29.9 s]
INFO:root:
Best Iter(dev)=    2	 dev=(HR@5:0.2501,NDCG@5:0.1702) [123.4 s] 
INFO:root:Load model from /tmp/x/rechorus_model.pt
INFO:root:
Dev  After Training: (HR@5:0.2501,NDCG@5:0.1702,HR@10:0.3304,NDCG@10:0.1961,HR@20:0.4205,NDCG@20:0.2188,HR@50:0.5806,NDCG@50:0.2503)
INFO:root:
Test After Training: (HR@5:0.2202,NDCG@5:0.1503,HR@10:0.3001,NDCG@10:0.1759,HR@20:0.3908,NDCG@20:0.1987,HR@50:0.5507,NDCG@50:0.2301)
INFO:root:
--------------------------------------------- END: 2026-12-08 01:00:00 ---------------------------------------------
"""


def test_parses_rechorus_final_results():
    res = bench.parse_final_results(FINAL_LOG)
    assert res["best_epoch"] == 2
    assert res["dev"] == {"HR@5": 0.2501, "NDCG@5": 0.1702, "HR@10": 0.3304, "NDCG@10": 0.1961, "HR@20": 0.4205,
                          "NDCG@20": 0.2188, "HR@50": 0.5806, "NDCG@50": 0.2503}
    assert res["test"]["NDCG@10"] == 0.1759 and res["test"]["HR@50"] == 0.5507 and len(res["test"]) == 8
    assert set(res["test"]) == set(bench.METRICS)  # "Test Before Training" is not taken for the final result
    assert [r["epoch"] for r in bench.parse_rechorus_log(FINAL_LOG)] == [1, 2, 3]
    # the same lines on stdout (no logging prefix), and a run that died before its final lines
    assert bench.parse_final_results(FINAL_LOG.replace("INFO:root:", "")) == res
    died = bench.parse_final_results(FINAL_LOG.split("INFO:root:\nBest")[0])
    assert died == {"dev": {}, "test": {}, "best_epoch": None}


def test_grocery_folder_is_what_rechorus_reads(tmp_path):
    # a Grocery-like ReChorus folder as shipped: dev/test carry neg_items, which full ranking never reads
    src = tmp_path / "src" / "Grocery_and_Gourmet_Food"
    src.mkdir(parents=True)
    (src / "train.csv").write_text("user_id\titem_id\ttime\n1\t1\t10\n1\t2\t11\n2\t2\t10\n2\t3\t12\n3\t1\t9\n"
                                   "3\t3\t9\n")
    (src / "dev.csv").write_text("user_id\titem_id\ttime\tneg_items\n1\t3\t20\t[2, 1]\n2\t1\t20\t[3, 2]\n"
                                 "3\t2\t20\t[1, 3]\n")
    (src / "test.csv").write_text("user_id\titem_id\ttime\tneg_items\n1\t4\t30\t[2, 1]\n2\t4\t30\t[3, 1]\n"
                                  "3\t4\t31\t[1, 2]\n")
    ds = bench.load_data("grocery", str(tmp_path / "src"))
    folder = bench.write_dataset_folder(ds, "grocery", tmp_path / "data")
    assert folder == tmp_path / "data" / "Grocery_and_Gourmet_Food"
    assert sorted(p.name for p in folder.iterdir()) == ["dev.csv", "test.csv", "train.csv"]
    assert (folder / "test.csv").read_text() == "user_id\titem_id\ttime\n1\t4\t30\n2\t4\t30\n3\t4\t31\n"
    for s in ("train", "dev", "test"):
        df = pd.read_csv(folder / f"{s}.csv", sep="\t")
        want = pd.read_csv(src / f"{s}.csv", sep="\t")[["user_id", "item_id", "time"]]
        assert df.equals(want), s
    assert ds.n_items == 5 and ds.n_users == 4  # ReChorus: max id + 1


def _run(test_ndcg10: float, secs: list[float], best: int = 2) -> dict:
    """A made-up run: every metric m@k = k / 1000 except test NDCG@10; epochs with the given seconds."""
    dev = {m: int(m.split("@")[1]) / 1000 for m in bench.METRICS}
    return {"dev": dev, "test": {**dev, "NDCG@10": test_ndcg10}, "best_epoch": best,
            "epochs": [{"epoch": i + 1, "loss": 0.5, "train_seconds": s, "dev": {}} for i, s in enumerate(secs)]}


def test_parity_summary_and_section_from_made_up_numbers():
    ours = {0: _run(0.10, [9.0, 5.0, 6.0]), 1: _run(0.11, [8.0, 7.0]), 2: _run(0.12, [30.0, 6.5, 5.5], best=3)}
    rc = {0: _run(0.1125, [50.0, 40.0, 44.0, 48.0])}
    s = bench.parity_summary(ours, rc)
    row = s["table"]["test NDCG@10"]
    assert row["ours_mean"] == pytest.approx(0.11) and row["ours_sd"] == pytest.approx(0.01)
    assert row["rechorus_mean"] == 0.1125 and row["rechorus_sd"] is None
    assert s["table"]["dev HR@50"] == {"ours_mean": pytest.approx(0.05), "ours_sd": pytest.approx(0.0),
                                       "rechorus_mean": 0.05, "rechorus_sd": None}
    assert len(s["table"]) == 16
    assert s["test_ndcg10_ratio"] == pytest.approx(0.11 / 0.1125)
    assert s["verdict"].startswith("met")
    # epochs 2..n of every run: ours 5, 6, 7, 6.5, 5.5 -> 6; ReChorus 40, 44, 48 -> 44
    assert s["epoch_seconds"] == {"ours": 6.0, "rechorus": 44.0} and s["speed_ratio"] == pytest.approx(44 / 6)
    assert s["best_epoch"] == {"ours": {0: 2, 1: 2, 2: 3}, "rechorus": {0: 2}}
    md = bench.parity_markdown(s, {"command": "cmd", "facts": {"date": "today"}},
                               bench.section_heading("bprmf", "grocery", "parity"))
    lines = md.splitlines()
    assert lines[0] == "## BPRMF vs ReChorus (grocery, parity)" and "- date: today" in lines
    assert "| test | NDCG@10 | 0.1100 ± 0.0100 | 0.1125 | **0.978** |" in lines
    assert "| dev | HR@50 | 0.0500 ± 0.0000 | 0.0500 | 1.000 |" in lines
    assert "**0.978**: met: within 5% (-2.2%)" in md and "ReChorus 44.0, ours 6.0: **7.3x**" in md
    assert "ours seed 0: 2 of 3, seed 1: 2 of 2, seed 2: 3 of 3; ReChorus seed 0: 2 of 4" in md
    # two ReChorus seeds get an sd; a 10% shortfall misses the target, a 6% excess is outside it too
    rc2 = {0: _run(0.12, [1.0, 2.0]), 1: _run(0.1244, [1.0, 2.0])}
    s2 = bench.parity_summary(ours, rc2)
    assert s2["table"]["test NDCG@10"]["rechorus_sd"] == pytest.approx(np.std([0.12, 0.1244], ddof=1))
    assert "0.1222 ± 0.0031" in bench.parity_markdown(s2, {"command": "c", "facts": {}}, "## X")
    assert bench.verdict(0.9) == "missed: ours 10.0% lower than ReChorus (target within 5%); to be explained"
    assert bench.verdict(1.06).startswith("missed: ours 6.0% higher")
    assert bench.verdict(1.05).startswith("met") and bench.verdict(0.95).startswith("met")


def test_section_headings_and_their_upserts_keep_each_other(tmp_path):
    one, dflt = bench.thread_setup(1, cores=2), bench.thread_setup(2, cores=2)
    assert (one, dflt, bench.thread_setup(4, cores=8)) == ("1 thread each", "each side's default threads (2)",
                                                           "4 threads each")
    assert bench.section_heading("sasrec", "ml-1m", "speed", one) == "## SASRec vs ReChorus (ml-1m, speed, 1 thread each)"
    assert (bench.section_heading("sasrec", "ml-1m", "speed", dflt)
            == "## SASRec vs ReChorus (ml-1m, speed, each side's default threads (2))")
    assert bench.section_heading("sasrec", "grocery", "parity", one) == "## SASRec vs ReChorus (grocery, parity)"
    assert bench.section_heading("lightgcn", "ml-1m", "speed") == "## LightGCN vs ReChorus (ml-1m, speed)"
    # the two speed set-ups of one model and dataset keep separate JSON records; parity has one
    assert bench.json_key("sasrec", "ml-1m", "speed", 1) != bench.json_key("sasrec", "ml-1m", "speed", 2)
    assert bench.json_key("bprmf", "grocery", "parity", 1) == bench.json_key("bprmf", "grocery", "parity", 2)
    p = tmp_path / "benchmarks.md"
    p.write_text("# Benchmarks\n\n## SASRec vs ReChorus (grocery, parity)\nparity 1\n\n## SASRec vs ReChorus\n"
                 "speed 1\n\n## The whole pipeline\nkeep\n")
    bench.upsert_section(p, "## SASRec vs ReChorus\n\nspeed 2\n")
    bench.upsert_section(p, "## SASRec vs ReChorus (grocery, parity)\n\nparity 2\n")
    bench.upsert_section(p, "## GRU4Rec vs ReChorus (ml-1m, parity)\n\ngru 1\n")
    assert p.read_text() == ("# Benchmarks\n\n## SASRec vs ReChorus (grocery, parity)\n\nparity 2\n\n"
                             "## SASRec vs ReChorus\n\nspeed 2\n\n## The whole pipeline\nkeep\n\n"
                             "## GRU4Rec vs ReChorus (ml-1m, parity)\n\ngru 1\n")


def test_json_keeps_other_keys_and_sits_beside_the_markdown(tmp_path):
    j = tmp_path / "benchmarks_rechorus.json"
    bench.upsert_json(j, "sasrec/ml-1m/speed", {"speed_ratio": 11.7})
    bench.upsert_json(j, "bprmf/grocery/parity", {"ours": {0: {"test": {"NDCG@10": 0.1}}}})
    bench.upsert_json(j, "sasrec/ml-1m/speed", {"speed_ratio": 8.0})
    assert json.loads(j.read_text()) == {"sasrec/ml-1m/speed": {"speed_ratio": 8.0},
                                        "bprmf/grocery/parity": {"ours": {"0": {"test": {"NDCG@10": 0.1}}}}}
    r = ["--rechorus", "x", "--rechorus-python", "y"]
    args = bench.parse_args([*r, "--out", str(tmp_path / "reports" / "benchmarks.md")])
    assert args.json == tmp_path / "reports" / "benchmarks_rechorus.json" and args.mode == "speed"
    assert bench.command_line(args).endswith("--epochs 3 --rounds 2 --threads "
                                             f"{args.threads} --rechorus-workers 5")
    assert "--model" not in bench.command_line(args)  # the committed SASRec speed command, unchanged
    args = bench.parse_args([*r, "--mode", "parity", "--model", "gru4rec", "--seeds", "0,1,2", "--max-epochs", "2"])
    assert args.seeds == [0, 1, 2] and args.rechorus_seeds == [0] and args.json is None
    assert "--model gru4rec --dataset ml-1m --mode parity --seeds 0,1,2 --rechorus-seeds 0 --max-epochs 2" in \
        bench.command_line(args)
    with pytest.raises(SystemExit):
        bench.parse_args([*r, "--seeds", "0,0"])


def test_a_checkout_is_unpatched_when_its_files_are_heads(tmp_path):
    import subprocess

    def git(*a):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *a], check=True,
                       capture_output=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print(1)\n")
    (tmp_path / "data.csv").write_text("x\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    assert not bench.changed_since_head(tmp_path, "src")
    (tmp_path / "src" / "__pycache__").mkdir()
    (tmp_path / "src" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "data.csv").write_text("changed outside src\n")
    git("rm", "-q", "-r", "--cached", ".")  # an empty index, files as in HEAD: still unpatched
    assert not bench.changed_since_head(tmp_path, "src")
    (tmp_path / "src" / "main.py").write_text("print(2)\n")
    assert bench.changed_since_head(tmp_path, "src")
    (tmp_path / "src" / "main.py").write_text("print(1)\n")
    (tmp_path / "src" / "patch.py").write_text("")
    assert bench.changed_since_head(tmp_path, "src")
    (tmp_path / "src" / "patch.py").unlink()
    (tmp_path / "src" / "main.py").unlink()
    assert bench.changed_since_head(tmp_path, "src")


def test_run_rechorus_reads_its_log_and_stops_on_a_failed_run(tmp_path, capsys):
    import sys

    # a stand-in for ReChorus's src/main.py that writes FINAL_LOG to --log_file, or dies after two epochs
    src = tmp_path / "repo" / "src"
    src.mkdir(parents=True)
    (tmp_path / "log.txt").write_text(FINAL_LOG)
    (src / "main.py").write_text(
        "import sys, shutil\nargs = sys.argv[1:]\nlog = args[args.index('--log_file') + 1]\n"
        f"text = open({str(tmp_path / 'log.txt')!r}).read()\n"
        "if '--die' in args:\n    text = text.split('INFO:root:\\nBest')[0]\n"
        "open(log, 'w').write(text)\nsys.exit(3 if '--die' in args else 0)\n")
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "main.py", "--log_file", str(work / "rechorus.log")]
    res = bench.run_rechorus(tmp_path / "repo", cmd, work, threads=1)
    assert res["test"]["NDCG@10"] == 0.1759 and res["best_epoch"] == 2 and len(res["epochs"]) == 3
    with pytest.raises(SystemExit, match="expected 5"):
        bench.run_rechorus(tmp_path / "repo", cmd, work, threads=1, epochs=5)
    with pytest.raises(SystemExit, match="ReChorus exited 3 with 3 epoch line"):
        bench.run_rechorus(tmp_path / "repo", [*cmd, "--die"], work, threads=1)


STAND_IN = r'''
import sys
args = sys.argv[1:]
opt = {args[i]: args[i + 1] for i in range(0, len(args) - 1) if args[i].startswith("--")}
n = int(opt.get("--epoch", "4"))
seed = int(opt["--random_seed"])
lines = ["INFO:root:Optimizer: Adam"]
for e in range(1, n + 1):
    lines.append(f"INFO:root:Epoch {e:<5} loss={0.5 / e:<.4f} [{10.0 + e:<3.1f} s]\tdev=(HR@5:0.1,NDCG@5:{0.01 * e:.4f}) [1.0 s] *")
lines.append(f"INFO:root:\nBest Iter(dev)={n:>5}\t dev=(HR@5:0.1) [9.0 s] ")
res = ",".join(f"HR@{k}:{k / 100:.4f},NDCG@{k}:{k / 200 + seed / 1000:.4f}" for k in (5, 10, 20, 50))
lines += [f"INFO:root:\nDev  After Training: ({res})", f"INFO:root:\nTest After Training: ({res})"]
open(opt["--log_file"], "w").write("\n".join(lines) + "\n")
print(" ".join(args))
'''


def test_main_parity_and_speed_end_to_end_with_a_stand_in_rechorus(tiny_root, tmp_path):
    import sys

    repo = tmp_path / "rechorus"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "main.py").write_text(STAND_IN)
    out = tmp_path / "reports" / "benchmarks.md"
    r = ["--rechorus", str(repo), "--rechorus-python", sys.executable, "--data-dir", str(tiny_root),
         "--threads", "1", "--rechorus-workers", "0", "--out", str(out)]
    bench.main([*r, "--mode", "parity", "--model", "bprmf", "--seeds", "0,1", "--rechorus-seeds", "0",
                "--max-epochs", "2"])
    bench.main([*r, "--model", "gru4rec", "--epochs", "2", "--rounds", "1"])
    md = out.read_text()
    assert md.count("## BPRMF vs ReChorus (ml-1m, parity)") == 1 and "## GRU4Rec vs ReChorus (ml-1m, speed, 1 thread each)" in md
    rec = json.loads((out.parent / "benchmarks_rechorus.json").read_text())
    assert set(rec) == {"bprmf/ml-1m/parity", "gru4rec/ml-1m/speed/threads1"}
    p = rec["bprmf/ml-1m/parity"]
    assert set(p["ours"]) == {"0", "1"} and set(p["rechorus"]) == {"0"}
    assert [len(p["ours"][s]["epochs"]) for s in ("0", "1")] == [2, 2]  # --max-epochs caps our side too
    assert "--epoch 2" in p["rechorus_commands"]["0"] and "--early_stop" not in p["rechorus_commands"]["0"]
    # ReChorus's numbers are the stand-in's final lines; ours come from training the tiny data
    assert p["rechorus"]["0"]["test"]["NDCG@10"] == 0.05 and p["summary"]["epoch_seconds"]["rechorus"] == 12.0
    ours_ndcg = [p["ours"][s]["test"]["NDCG@10"] for s in ("0", "1")]
    assert p["summary"]["test_ndcg10_ratio"] == pytest.approx(np.mean(ours_ndcg) / 0.05)
    assert f"| test | NDCG@10 | {np.mean(ours_ndcg):.4f} ± {np.std(ours_ndcg, ddof=1):.4f} | 0.0500 |" in md
    assert "capped at 2 epoch(s)" in md
    s = rec["gru4rec/ml-1m/speed/threads1"]
    assert [e["train_seconds"] for e in s["rechorus"]["0"]["epochs"]] == [11.0, 12.0]
    assert s["speed_ratio"] == pytest.approx(11.5 / s["median_epoch_seconds"]["ours"])


def test_lightgcn_runs_through_the_cpu_launcher_which_leaves_main_py_as_is(tiny_ds, tmp_path):
    import subprocess
    import sys

    import torch

    cmd = bench.rechorus_command("py", "lightgcn", models.model_config("lightgcn", tiny_ds),
                                 bench.train_settings("lightgcn"), tmp_path, "ml-1m", tmp_path, 0, 0)
    assert cmd[:4] == ["py", "-c", bench.CPU_LAUNCHER, "main.py"]
    for model in ("sasrec", "gru4rec", "bprmf"):
        assert bench.rechorus_command("py", model, models.model_config(model, tiny_ds), bench.train_settings(model),
                                      tmp_path, "ml-1m", tmp_path, 0, 0)[:2] == ["py", "main.py"]
    if torch.cuda.is_available():
        pytest.skip("the launcher changes nothing where CUDA exists")
    # a main.py that moves a tensor with .cuda() as ReChorus's LightGCN does, and reads its own arguments
    (tmp_path / "main.py").write_text("import sys, torch\nfrom helper import VALUE\n"
                                      "t = torch.ones(2).to_sparse().cuda()\n"
                                      "print(t.device, sys.argv[1:], VALUE, __name__)\n")
    (tmp_path / "helper.py").write_text("VALUE = 7\n")  # imported from the script's folder, as main.py does
    r = subprocess.run([sys.executable, "-c", bench.CPU_LAUNCHER, "main.py", "--n_layers", "3"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cpu ['--n_layers', '3'] 7 __main__"
    plain = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, capture_output=True, text=True)
    assert plain.returncode != 0 and "CUDA" in plain.stderr  # without it, the .cuda() call fails
