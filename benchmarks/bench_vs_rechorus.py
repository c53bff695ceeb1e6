"""Benchmark against ReChorus's own `main.py`: per-epoch speed, and result parity, for SASRec, GRU4Rec, BPRMF
and LightGCN on the same ML_1MTOPK or Grocery files and the same settings.

Our side trains with `train.train_model` (recsae_utils/models/, settings in docs/models.md); ReChorus's side
is its unpatched `src/main.py`, given the command line built from the same settings: the model's shape
(width, layers, heads, hidden size, history) from our model config and lr / l2 from our defaults
(config.MODEL_DEFAULTS, which follow ReChorus's `docs/demo_scripts_results/Topk_Amazon.sh`), batch 256,
full-ranking evaluation (`--test_all 1`, so dev/test need no neg_items), top-k 5,10,20,50, dev NDCG@5 as
the selection metric on both sides. Both read the same files: our data prep builds ML_1MTOPK from raw
MovieLens-1M, and Grocery is read from its ReChorus folder; either is written in ReChorus's format
(tab-separated train/dev/test.csv with user_id, item_id, time) under the folder name ReChorus expects
(ML_1MTOPK, Grocery_and_Gourmet_Food). ReChorus runs general models (BPRMF, LightGCN) through its
BaseReader and sequential ones through its SeqReader; both take these files.

Two modes:
- `--mode speed` (default): a few epochs with early stopping off, `--rounds` runs alternating (ReChorus,
  ours, ReChorus, ours, ...) so that machine noise hits both; the ratio of median training seconds per
  epoch. Only the ratio measured in one run means anything on a shared machine.
- `--mode parity`: both sides train to convergence with early stopping as each does by default (ReChorus:
  200 epochs, patience 10; ours: train_model's defaults, the same), for `--seeds` on our side and
  `--rechorus-seeds` on ReChorus's (runs alternate seed by seed). The table gives dev and test
  HR/NDCG@{5,10,20,50}: our mean ± sd over seeds, ReChorus's mean (± sd with more than one seed), the
  ratio ours / ReChorus of test NDCG@10 against issue 24's target (within 5%), and the per-epoch
  training seconds of both sides (median over epochs 2..n of every run), hence the speed ratio too.
  ReChorus's final numbers are its log's "Dev  After Training" / "Test After Training" lines (main.py,
  after reloading its best-dev weights), ours are `train.evaluate` on the best-dev weights.
  `--max-epochs N` caps both sides at N epochs (quick checks; not a parity result).

What an epoch time covers: ReChorus's `[x s]` after `loss=` in its log (BaseRunner.train: from the end of
the previous epoch's dev evaluation to the end of `fit`, i.e. gc, negative sampling, the DataLoader with
its workers and every batch); ours is TrainResult.history's `train_seconds` (negative sampling, shuffling
and every batch). Dev evaluation is excluded from both. Both get the same torch intra-op thread count
(`--threads`): OMP_NUM_THREADS / MKL_NUM_THREADS in ReChorus's environment (checked by asking its
python), and torch.set_num_threads here. ReChorus keeps its default DataLoader workers (5) unless
`--rechorus-workers` says otherwise. Each side at its default threads: leave `--threads` at the core
count; one thread each: `--threads 1 --rechorus-workers 0` (on a machine busy with other jobs, ReChorus's
5 workers plus 2 torch threads on 2 cores oversubscribe it badly).

ReChorus is never copied into this repository: point the script at a checkout and a venv of its own,
which needs an older stack (np.int / np.object, removed in numpy 1.24). Made and tested with:

    git clone https://github.com/THUwangcy/ReChorus /work/rechorus    # tested at e58d752
    python3.11 -m venv /work/rechorus_venv
    /work/rechorus_venv/bin/pip install numpy==1.23.5 pandas==1.5.3 scipy==1.15.3 scikit-learn==1.7.2 \\
        PyYAML tqdm torch==2.13.0        # torch: the CPU build (add PyTorch's CPU wheel index if needed)

ReChorus runs unpatched; only its src/ is used (its data/ folder is not read; the benchmark writes the
dataset, and ReChorus its corpus pickle, into a temporary folder). One exception to running `main.py` as
is: ReChorus's LightGCN calls `.cuda()` unconditionally and cannot start without CUDA, so on a CPU-only
machine its main.py runs through a small launcher (`python -c CPU_LAUNCHER main.py ...`) that makes
`Tensor.cuda` a no-op when CUDA is absent; the report says so. Then, from this repository's root
(R = the two ReChorus options):

    R="--rechorus /work/rechorus --rechorus-python /work/rechorus_venv/bin/python"
    # speed, SASRec on ML-1M; each side at its default threads (section "SASRec vs ReChorus (ml-1m, speed,
    # each side's default threads (2))"; issue 24 asks for ReChorus's workers at 0 here too):
    RECSAE_DATA_DIR=../shared/data PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_vs_rechorus.py $R \\
        --epochs 3 --rounds 2 --rechorus-workers 0 --out reports/benchmarks.md
    # ... one thread each:
    ... benchmarks/bench_vs_rechorus.py $R --epochs 3 --rounds 2 --threads 1 --rechorus-workers 0 --out ...
    # speed of another model or dataset (section "GRU4Rec vs ReChorus (grocery, speed)"):
    ... benchmarks/bench_vs_rechorus.py $R --model gru4rec --dataset grocery --epochs 3 --rounds 2 --out ...
    # parity (section "<Model> vs ReChorus (<dataset>, parity)"), for each model and dataset:
    ... benchmarks/bench_vs_rechorus.py $R --mode parity --model bprmf --dataset grocery \\
        --seeds 0,1,2 --rechorus-seeds 0 --threads 1 --rechorus-workers 0 --out reports/benchmarks.md
    # a quick check that both sides run (2 epochs each, not a parity result):
    ... benchmarks/bench_vs_rechorus.py $R --mode parity --model bprmf --dataset grocery --seeds 0 \\
        --rechorus-seeds 0 --max-epochs 2 --threads 1 --rechorus-workers 0

`--out` replaces (or appends) this run's section of that Markdown file, leaving every other section, and
`--json` (default: benchmarks_rechorus.json beside `--out`) keeps every number of the run under the key
"<model>/<dataset>/<mode>", leaving the other keys.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsae_utils import artifacts, config, data, models, sources, train
from recsae_utils.metrics import TOPK

# our dataset name -> the folder name ReChorus reads under --path
DATASETS = {"ml-1m": "ML_1MTOPK", "grocery": "Grocery_and_Gourmet_Food"}
# our model -> ReChorus's --model_name and the ReChorus flag of each field of our model config
RECHORUS_MODELS = {
    "sasrec": ("SASRec", {"d_model": "--emb_size", "n_layers": "--num_layers", "n_heads": "--num_heads",
                          "history_max": "--history_max"}),
    "gru4rec": ("GRU4Rec", {"d_model": "--emb_size", "hidden_size": "--hidden_size",
                            "history_max": "--history_max"}),
    "bprmf": ("BPRMF", {"d_model": "--emb_size"}),
    "lightgcn": ("LightGCN", {"d_model": "--emb_size", "n_layers": "--n_layers"}),
}
# ReChorus's LightGCN moves its graph with an unconditional `.cuda()` (LGCNEncoder.__init__, LightGCN.py line
# 120 at e58d752), so it cannot start on a CPU-only machine. Its main.py then runs through this launcher:
# with no CUDA, Tensor.cuda returns the tensor as it is (on the CPU); ReChorus's files stay unchanged.
CUDA_ONLY = ("lightgcn",)
CPU_LAUNCHER = ("import runpy, sys, torch\n"
                "if not torch.cuda.is_available():\n"
                "    torch.Tensor.cuda = lambda self, *args, **kwargs: self\n"
                "sys.argv = sys.argv[1:]\n"
                "runpy.run_path(sys.argv[0], run_name='__main__')\n")
METRICS = [f"{m}@{k}" for m in ("HR", "NDCG") for k in TOPK]
TARGET = 0.05  # issue 24: our 3-seed mean test NDCG@10 within 5% of ReChorus's
# BaseRunner.train: 'Epoch {:<5} loss={:<.4f} [{:<3.1f} s]\tdev=({})', on stdout as is, in its log file
# after logging's 'INFO:root:'
EPOCH_LINE = re.compile(r"^(?:[A-Z]+:[\w.]*:)?Epoch (\d+)\s+loss=(\S+) \[([\d.]+) s\]\s+dev=\(([^)]*)\)", re.M)
# main.py: logging.info(os.linesep + 'Dev  After Training: ' + '(' + format_metric(...) + ')'), same for Test;
# the linesep puts the text at the start of its own line (logging's prefix stays on the line before)
FINAL_LINE = re.compile(r"^(?:[A-Z]+:[\w.]*:)?(Dev|Test)\s+After Training: \(([^)]*)\)", re.M)
BEST_LINE = re.compile(r"Best Iter\(dev\)=\s*(\d+)")


# ---------------------------------------------------------------------------------------------------
# The shared input and the settings of both sides


def load_data(dataset: str, data_dir: str) -> data.Dataset:
    """Our splits of `dataset`: ML_1MTOPK from raw MovieLens-1M, Grocery from its ReChorus folder."""
    if dataset == "ml-1m":
        return data.build_ml1m(sources.resolve_source(data_dir, "ml-1m"), cache=Path(tempfile.gettempdir()))
    return data.load_rechorus(sources.resolve_source(data_dir, dataset), dataset)


def write_rechorus_dataset(ds: data.Dataset, folder: str | os.PathLike) -> Path:
    """Write `ds` as a ReChorus dataset folder: train/dev/test.csv, tab-separated, header user_id, item_id,
    time (BaseReader reads these three; SeqReader joins the splits back on exactly these columns)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s in sources.SPLITS:
        df = ds.split(s)[["user_id", "item_id", "time"]].astype(np.int64)
        artifacts.write_text(folder / f"{s}.csv", df.to_csv(sep="\t", index=False))
    return folder


def write_dataset_folder(ds: data.Dataset, dataset: str, root: str | os.PathLike) -> Path:
    """`ds` written as `root/<ReChorus's folder name for dataset>` (ReChorus: --path root --dataset <name>)."""
    return write_rechorus_dataset(ds, Path(root) / DATASETS[dataset])


def train_settings(model: str) -> dict:
    """lr, l2 and batch sizes our pipeline trains `model` with (RunConfig defaults, then the model's own)."""
    run = {f.name: f.default for f in fields(config.RunConfig) if f.name in ("lr", "l2", "batch_size")}
    tc = train.TrainConfig()
    return {**run, **config.MODEL_DEFAULTS[model], "eval_batch_size": tc.eval_batch_size}


def rechorus_command(python: str, model: str, model_cfg, settings: dict, data_root: Path, dataset: str,
                     work: Path, seed: int, workers: int, epochs: int | None = None,
                     early_stop: int | None = None) -> list[str]:
    """ReChorus's main.py command for `model` with our settings: the model config's shape fields under
    their ReChorus flags, lr / l2 / batch sizes from `settings`, full ranking at 5,10,20,50 on CPU.
    `epochs` / `early_stop` None leave ReChorus's defaults (200 epochs, patience 10). A model of CUDA_ONLY
    runs main.py through CPU_LAUNCHER."""
    name, flags = RECHORUS_MODELS[model]
    cfg = model_cfg.to_dict()
    cmd = [python, *(["-c", CPU_LAUNCHER] if model in CUDA_ONLY else []), "main.py", "--model_name", name]
    for field, flag in flags.items():
        cmd += [flag, str(cfg[field])]
    cmd += ["--lr", f"{settings['lr']:g}", "--l2", f"{settings['l2']:g}",
            "--batch_size", str(settings["batch_size"]), "--eval_batch_size", str(settings["eval_batch_size"])]
    if epochs is not None:
        cmd += ["--epoch", str(epochs)]
    if early_stop is not None:
        cmd += ["--early_stop", str(early_stop)]
    cmd += ["--test_all", "1", "--topk", ",".join(map(str, TOPK)), "--metric", "NDCG,HR",
            "--num_workers", str(workers), "--random_seed", str(seed), "--gpu", "", "--save_final_results", "0",
            "--path", str(data_root), "--dataset", DATASETS[dataset],
            "--log_file", str(work / "rechorus.log"), "--model_path", str(work / "rechorus_model.pt")]
    return cmd


# ---------------------------------------------------------------------------------------------------
# ReChorus's log


def _metric_dict(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (kv.split(":") for kv in text.split(",") if ":" in kv)}


def parse_rechorus_log(text: str) -> list[dict]:
    """Per-epoch rows {epoch, loss, train_seconds, dev} from ReChorus's log (dev: its metric string)."""
    return [{"epoch": int(m.group(1)), "loss": float(m.group(2)), "train_seconds": float(m.group(3)),
             "dev": _metric_dict(m.group(4))} for m in EPOCH_LINE.finditer(text)]


def parse_final_results(text: str) -> dict:
    """{"dev": {...}, "test": {...}, "best_epoch": int | None} from ReChorus's log: the metrics main.py prints
    after training on the reloaded best weights; {} for a split whose line is missing (a failed run)."""
    out: dict = {"dev": {}, "test": {}}
    for m in FINAL_LINE.finditer(text):
        out[m.group(1).lower()] = _metric_dict(m.group(2))
    best = BEST_LINE.findall(text)
    out["best_epoch"] = int(best[-1]) if best else None
    return out


# ---------------------------------------------------------------------------------------------------
# The two runs


def rechorus_env(threads: int) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # its own modules only
    return env


def rechorus_stack(python: str, threads: int) -> str:
    """Versions and the torch thread count ReChorus's interpreter sees under `rechorus_env`."""
    code = ("import torch, numpy, pandas; print(f'torch {torch.__version__}, numpy {numpy.__version__}, "
            "pandas {pandas.__version__}, torch threads {torch.get_num_threads()}')")
    r = subprocess.run([python, "-c", code], env=rechorus_env(threads), capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"error: {python} cannot import torch/numpy/pandas:\n{r.stderr[-2000:]}")
    return r.stdout.strip()


def run_rechorus(repo: Path, cmd: list[str], work: Path, threads: int, epochs: int | None = None) -> dict:
    """Run ReChorus's main.py; {"epochs": per-epoch rows, "dev", "test", "best_epoch"} from its log. Exits
    with the command and the log's tail when it fails, or when `epochs` is given and it ran another number."""
    out = work / "rechorus_stdout.txt"
    log = work / "rechorus.log"
    shown = 0
    with open(out, "w") as f:
        r = subprocess.Popen(cmd, cwd=repo / "src", env=rechorus_env(threads), stdout=f, stderr=subprocess.STDOUT)
        while True:  # a progress line per finished epoch (a parity run takes hours)
            try:
                r.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                rows = parse_rechorus_log(log.read_text(errors="replace")) if log.exists() else []
                for row in rows[shown:]:
                    print(f"  ReChorus epoch {row['epoch']}: {row['train_seconds']:.1f}s loss {row['loss']:.4f} "
                          f"dev NDCG@5 {row['dev'].get('NDCG@5', float('nan')):.4f}", flush=True)
                shown = max(shown, len(rows))
    text = log.read_text(errors="replace") if log.exists() else out.read_text(errors="replace")
    rows = parse_rechorus_log(text)
    final = parse_final_results(text)
    bad = (r.returncode or not rows or (epochs is not None and len(rows) != epochs)
           or set(final["test"]) < set(METRICS) or set(final["dev"]) < set(METRICS))
    if bad:
        sys.exit(f"error: ReChorus exited {r.returncode} with {len(rows)} epoch line(s)"
                 f"{f' (expected {epochs})' if epochs is not None else ''} and final results for "
                 f"{[s for s in ('dev', 'test') if final[s]]}; command:\n"
                 f"  (cd {repo / 'src'} && {shlex.join(cmd)})\nlast output ({out}):\n"
                 f"{out.read_text(errors='replace')[-3000:]}")
    return {"epochs": rows, **final}


def run_ours(ds: data.Dataset, inst: dict, model: str, settings: dict, seed: int, threads: int,
             max_epochs: int | None = None, early_stop: int | None = None, compile_: str = "auto") -> dict:
    """Our training as the pipeline runs `model` (lr / l2 / batch from `settings`), evaluated on dev and test
    with the best-dev weights. None leaves train_model's epoch cap / patience (ReChorus's: 200, 10)."""
    tc = train.TrainConfig(lr=settings["lr"], l2=settings["l2"], batch_size=settings["batch_size"],
                           eval_batch_size=settings["eval_batch_size"], seed=seed, device="cpu",
                           threads=threads, compile=compile_)
    if max_epochs is not None:
        tc.max_epochs = max_epochs
    if early_stop is not None:
        tc.early_stop = early_stop
    def show(row: dict) -> None:
        print(f"  ours epoch {row['epoch']}: {row['train_seconds']:.1f}s loss {row['loss']:.4f} "
              f"dev NDCG@5 {row['dev']['NDCG@5']:.4f}", flush=True)

    res = train.train_model(ds, inst, tc, models.model_config(model, ds), progress=False, on_epoch=show)
    mask = data.user_item_csr(ds)
    return {"epochs": [{"epoch": h["epoch"], "loss": h["loss"], "train_seconds": h["train_seconds"],
                        "dev": h["dev"]} for h in res.history],
            "best_epoch": res.best_epoch,
            "dev": train.evaluate(res.model, inst["dev"], mask), "test": train.evaluate(res.model, inst["test"], mask)}


# ---------------------------------------------------------------------------------------------------
# Numbers


def epoch_median(runs: list[dict]) -> float:
    """Median training seconds per epoch over epochs 2..n of every run (epoch 1 carries warm-up: our
    compile, ReChorus's first DataLoader); a run of one epoch counts that epoch."""
    secs = [r["train_seconds"] for run in runs for r in run["epochs"] if r["epoch"] >= 2 or len(run["epochs"]) == 1]
    return float(np.median(secs))


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1; None for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def verdict(ratio: float, target: float = TARGET) -> str:
    """Issue 24's parity target on ours / ReChorus of test NDCG@10."""
    pct = (ratio - 1) * 100
    if abs(ratio - 1) <= target + 1e-12:  # 1.05 - 1 is 0.05000000000000004 in floats
        return f"met: within {target:.0%} ({pct:+.1f}%)"
    side = "lower" if ratio < 1 else "higher"
    return f"missed: ours {abs(pct):.1f}% {side} than ReChorus (target within {target:.0%}); to be explained"


def parity_summary(ours: dict[int, dict], rechorus: dict[int, dict]) -> dict:
    """Per split and metric {ours_mean, ours_sd, rechorus_mean, rechorus_sd}; the test NDCG@10 ratio and its
    verdict; per-epoch medians and their ratio; best epochs. `ours` / `rechorus`: seed -> run."""
    table = {}
    for split in ("dev", "test"):
        for m in METRICS:
            om, osd = mean_sd([r[split][m] for r in ours.values()])
            rm, rsd = mean_sd([r[split][m] for r in rechorus.values()])
            table[f"{split} {m}"] = {"ours_mean": om, "ours_sd": osd, "rechorus_mean": rm, "rechorus_sd": rsd}
    ratio = table["test NDCG@10"]["ours_mean"] / table["test NDCG@10"]["rechorus_mean"]
    e_ours, e_rc = epoch_median(list(ours.values())), epoch_median(list(rechorus.values()))
    return {"table": table, "test_ndcg10_ratio": ratio, "verdict": verdict(ratio),
            "epoch_seconds": {"ours": e_ours, "rechorus": e_rc}, "speed_ratio": e_rc / e_ours,
            "best_epoch": {"ours": {s: r["best_epoch"] for s, r in ours.items()},
                           "rechorus": {s: r["best_epoch"] for s, r in rechorus.items()}},
            "epochs_run": {"ours": {s: len(r["epochs"]) for s, r in ours.items()},
                           "rechorus": {s: len(r["epochs"]) for s, r in rechorus.items()}}}


def _pm(mean: float, sd: float | None) -> str:
    return f"{mean:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")


# ---------------------------------------------------------------------------------------------------
# Report


def thread_setup(threads: int, cores: int | None = None) -> str:
    """The thread set-up a speed section is about: each side at its default (torch's intra-op default is
    the core count) or a forced count, so that the two set-ups issue 24 asks for keep separate sections."""
    cores = os.cpu_count() if cores is None else cores
    if threads == cores:
        return f"each side's default threads ({threads})"
    return "1 thread each" if threads == 1 else f"{threads} threads each"


def section_heading(model: str, dataset: str, mode: str, setup: str | None = None) -> str:
    """The Markdown heading of a run's section: model, dataset, mode and, for speed, the thread set-up."""
    tail = f", {setup}" if mode == "speed" and setup else ""
    return f"## {models.label(model)} vs ReChorus ({dataset}, {mode}{tail})"


def json_key(model: str, dataset: str, mode: str, threads: int) -> str:
    """The key of a run in benchmarks_rechorus.json; speed runs are kept per thread count."""
    return f"{model}/{dataset}/{mode}" + (f"/threads{threads}" if mode == "speed" else "")


def _git(repo: Path, *args: str) -> str:
    """Output of a git command in `repo`, "" when it fails (not a checkout, no git)."""
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def changed_since_head(repo: Path, *paths: str) -> bool:
    """Whether the files under `paths` differ from HEAD's: a tracked file changed or gone, or a new file
    (bytecode aside). Compared by content, not through git's index, so a checkout whose index is empty or
    stale (files present, index not) still reads as unpatched when its files are HEAD's."""
    tree = {}
    for line in _git(repo, "ls-tree", "-r", "HEAD", "--", *paths).splitlines():
        meta, path = line.split("\t", 1)
        tree[path] = meta.split()[2]
    on_disk = [p for p in tree if (repo / p).is_file()]
    if len(on_disk) < len(tree):
        return True
    if on_disk:
        r = subprocess.run(["git", "-C", str(repo), "hash-object", "--stdin-paths"], input="\n".join(on_disk),
                           capture_output=True, text=True)
        if r.returncode or r.stdout.split() != [tree[p] for p in on_disk]:
            return True
    others = _git(repo, "ls-files", "--others", "--exclude-standard", "--", *paths).splitlines()
    return any(p not in tree and not p.endswith((".pyc", ".pyo")) and "__pycache__/" not in p for p in others)


def _commit(repo: Path, *paths: str) -> str:
    """Short commit of `repo`, noting changes under `paths` (changed_since_head)."""
    head = _git(repo, "rev-parse", "--short=12", "HEAD") or "unknown"
    return head + (" (with uncommitted changes)" if head != "unknown" and changed_since_head(repo, *paths) else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _header(meta: dict, heading: str) -> list[str]:
    return [heading, "", f"`{meta['command']}`", "", *[f"- {k}: {v}" for k, v in meta["facts"].items()]]


def markdown(runs: list[tuple[int, list[dict], list[dict]]], meta: dict, heading: str) -> str:
    """The speed section: setup lines, then one row per (round, epoch) and the medians and their ratio."""
    rc = [r["train_seconds"] for _, a, _ in runs for r in a]
    ours = [r["train_seconds"] for _, _, b in runs for r in b]
    med_rc, med_ours = float(np.median(rc)), float(np.median(ours))
    out = _header(meta, heading)
    out += ["", "| round | epoch | ReChorus s | ours s | ReChorus loss | ours loss | ReChorus dev NDCG@5 | "
            "ours dev NDCG@5 |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rnd, a, b in runs:
        for x, y in zip(a, b):
            out.append(f"| {rnd} | {x['epoch']} | {x['train_seconds']:.1f} | {y['train_seconds']:.1f} | "
                       f"{x['loss']:.4f} | {y['loss']:.4f} | {x['dev'].get('NDCG@5', float('nan')):.4f} | "
                       f"{y['dev']['NDCG@5']:.4f} |")
    out += [f"| median | | {med_rc:.1f} | {med_ours:.1f} | | | | |", "",
            f"ReChorus / ours, median training seconds per epoch: **{med_rc / med_ours:.1f}x** "
            f"({len(rc)} epoch(s) each, runs alternating). Losses and dev metrics differ by RNG only "
            "(different negatives and shuffles), not by maths; only same-run ratios are comparable.", ""]
    return "\n".join(out)


def parity_markdown(summary: dict, meta: dict, heading: str) -> str:
    """The parity section: setup lines, the metric table (ours mean ± sd, ReChorus mean (± sd), ratio),
    the test NDCG@10 verdict, and per-epoch seconds with their ratio."""
    n_ours, n_rc = len(summary["best_epoch"]["ours"]), len(summary["best_epoch"]["rechorus"])
    out = _header(meta, heading)
    out += ["", f"| split | metric | ours ({n_ours} seed(s)) | ReChorus ({n_rc} seed(s)) | ours / ReChorus |",
            "|---|---|---:|---:|---:|"]
    for key, row in summary["table"].items():
        split, metric = key.split(" ")
        ratio = row["ours_mean"] / row["rechorus_mean"] if row["rechorus_mean"] else float("nan")
        bold = "**" if key == "test NDCG@10" else ""
        out.append(f"| {split} | {metric} | {_pm(row['ours_mean'], row['ours_sd'])} | "
                   f"{_pm(row['rechorus_mean'], row['rechorus_sd'])} | {bold}{ratio:.3f}{bold} |")
    e = summary["epoch_seconds"]

    def best(side: str) -> str:
        return ", ".join(f"seed {s}: {b} of {summary['epochs_run'][side][s]}"
                         for s, b in summary["best_epoch"][side].items())

    out += ["", f"Test NDCG@10, ours / ReChorus: **{summary['test_ndcg10_ratio']:.3f}**: {summary['verdict']}.",
            "", f"Best epoch (of epochs run): ours {best('ours')}; ReChorus {best('rechorus')}.", "",
            f"Training seconds per epoch (median of epochs 2..n over all runs): ReChorus {e['rechorus']:.1f}, "
            f"ours {e['ours']:.1f}: **{summary['speed_ratio']:.1f}x**. Runs alternate seed by seed; only "
            "same-run ratios are comparable.", ""]
    return "\n".join(out)


def upsert_section(path: Path, section: str) -> None:
    """Replace the section whose heading line is `section`'s first line (up to the next '## ' heading) in
    `path`, or append it. Headings match as whole lines, so "## SASRec vs ReChorus" never takes
    "## SASRec vs ReChorus (grocery, parity)"."""
    heading = section.split("\n", 1)[0].rstrip()
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    m = re.search(rf"^{re.escape(heading)}[ \t]*$", text, re.M)
    if m is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", m.end())
        new = text[:m.start()] + section + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
    artifacts.write_text(path, new)


def upsert_json(path: Path, key: str, record: dict) -> None:
    """Set `key` of the JSON object in `path` (created when missing), keeping the other keys."""
    obj = artifacts.read_json(path) if path.exists() else {}
    obj[key] = record
    artifacts.write_json(path, obj)


# ---------------------------------------------------------------------------------------------------


def _seeds(text: str, flag: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"error: {flag} {text!r}: give comma-separated integers, e.g. 0,1,2")
    if not seeds or len(set(seeds)) != len(seeds):
        sys.exit(f"error: {flag} {text!r}: give at least one seed, each once")
    return seeds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rechorus", required=True, type=Path, help="checkout of THUwangcy/ReChorus")
    ap.add_argument("--rechorus-python", required=True, help="python of ReChorus's own venv")
    ap.add_argument("--model", choices=list(RECHORUS_MODELS), default="sasrec", help="model, both sides")
    ap.add_argument("--dataset", choices=list(DATASETS), default="ml-1m",
                    help="ml-1m (ML_1MTOPK from raw MovieLens-1M) or grocery (its ReChorus folder)")
    ap.add_argument("--mode", choices=("speed", "parity"), default="speed",
                    help="speed: a few epochs per run, alternating rounds; parity: to convergence, per seed")
    ap.add_argument("--epochs", type=int, default=3, help="speed: training epochs per run (both)")
    ap.add_argument("--rounds", type=int, default=2, help="speed: alternating rounds (ReChorus run, our run)")
    ap.add_argument("--seed", type=int, default=0, help="speed: seed of round 0 (round r uses seed + r), both sides")
    ap.add_argument("--seeds", default="0,1,2", help="parity: our seeds")
    ap.add_argument("--rechorus-seeds", default="0", help="parity: ReChorus's seeds")
    ap.add_argument("--max-epochs", type=int, help="parity: cap both sides at this many epochs (quick checks; "
                    "default: each side's own cap, 200)")
    ap.add_argument("--data-dir", default=os.environ.get("RECSAE_DATA_DIR", "../shared/data"),
                    help="folder with ml-1m/ (raw MovieLens-1M) and Grocery_and_Gourmet_Food/; "
                         "default $RECSAE_DATA_DIR or ../shared/data")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads, both sides")
    ap.add_argument("--rechorus-workers", type=int, default=5, help="ReChorus --num_workers (its default: 5)")
    ap.add_argument("--out", type=Path, help="Markdown file whose section for this model, dataset and mode is "
                    "(re)written")
    ap.add_argument("--json", type=Path, help="JSON file keeping every number under '<model>/<dataset>/<mode>' "
                    "(default: benchmarks_rechorus.json beside --out)")
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.rounds < 1 or (args.max_epochs is not None and args.max_epochs < 1):
        sys.exit("error: --epochs, --rounds and --max-epochs must be >= 1")
    args.seeds = _seeds(args.seeds, "--seeds")
    args.rechorus_seeds = _seeds(args.rechorus_seeds, "--rechorus-seeds")
    if args.json is None and args.out is not None:
        args.json = args.out.with_name("benchmarks_rechorus.json")
    return args


def command_line(args: argparse.Namespace) -> str:
    """This run's command as the report shows it (mode-specific options only)."""
    parts = ["benchmarks/bench_vs_rechorus.py", "--rechorus", str(args.rechorus), "--rechorus-python",
             args.rechorus_python]
    if (args.model, args.dataset, args.mode) != ("sasrec", "ml-1m", "speed"):
        parts += ["--model", args.model, "--dataset", args.dataset, "--mode", args.mode]
    if args.mode == "speed":
        parts += ["--epochs", str(args.epochs), "--rounds", str(args.rounds)]
    else:
        parts += ["--seeds", ",".join(map(str, args.seeds)),
                  "--rechorus-seeds", ",".join(map(str, args.rechorus_seeds))]
        if args.max_epochs is not None:
            parts += ["--max-epochs", str(args.max_epochs)]
    parts += ["--threads", str(args.threads), "--rechorus-workers", str(args.rechorus_workers)]
    return " ".join(parts)


def _print_run(who: str, tag: str, t: float, run: dict) -> None:
    line = ", ".join(f"{r['train_seconds']:.1f}s loss {r['loss']:.4f}" for r in run["epochs"][:6])
    more = f" ... ({len(run['epochs'])} epochs)" if len(run["epochs"]) > 6 else ""
    test = f"; test NDCG@10 {run['test']['NDCG@10']:.4f}" if run.get("test") else ""
    print(f"{tag} {who} ({time.time() - t:.0f}s wall): {line}{more}{test}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (args.rechorus / "src" / "main.py").is_file():
        sys.exit(f"error: {args.rechorus}: no src/main.py (expected a ReChorus checkout)")
    load0 = os.getloadavg()[0]  # other jobs on the machine slow both sides; the report states the load
    stack = rechorus_stack(args.rechorus_python, args.threads)
    torch.set_num_threads(args.threads)

    t0 = time.time()
    ds = load_data(args.dataset, args.data_dir)
    inst = data.build_instances(ds)
    model_cfg = models.model_config(args.model, ds)
    settings = train_settings(args.model)
    print(f"data prep {time.time() - t0:.1f}s: {ds.counts()}", flush=True)
    speed = args.mode == "speed"
    runs: list = []
    ours_runs: dict[int, dict] = {}
    rc_runs: dict[int, dict] = {}
    rc_cmds: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_vs_rechorus_") as tmp:
        root = Path(tmp)
        write_dataset_folder(ds, args.dataset, root / "data")
        plan = ([(args.seed + r, args.seed + r, f"round {r}") for r in range(args.rounds)] if speed else
                [(s if s in args.rechorus_seeds else None, s if s in args.seeds else None, f"seed {s}")
                 for s in dict.fromkeys(args.rechorus_seeds + args.seeds)])
        for i, (rc_seed, our_seed, tag) in enumerate(plan):  # alternating: ReChorus, then ours
            if rc_seed is not None:
                work = root / f"run{i}"
                work.mkdir()
                cmd = rechorus_command(args.rechorus_python, args.model, model_cfg, settings, root / "data",
                                       args.dataset, work, rc_seed, args.rechorus_workers,
                                       epochs=args.epochs if speed else args.max_epochs,
                                       early_stop=0 if speed else None)
                shown = cmd[cmd.index("main.py"):]  # the launcher, when there is one, is stated in the facts
                rc_cmds[rc_seed] = shlex.join(shown).replace(str(root), "$TMP")
                t = time.time()
                rc_runs[rc_seed] = run_rechorus(args.rechorus, cmd, work, args.threads,
                                                args.epochs if speed else None)
                _print_run("ReChorus", tag, t, rc_runs[rc_seed])
            if our_seed is not None:
                t = time.time()
                ours_runs[our_seed] = (
                    run_ours(ds, inst, args.model, settings, our_seed, args.threads, args.epochs, args.epochs + 1,
                             "on") if speed else
                    run_ours(ds, inst, args.model, settings, our_seed, args.threads, args.max_epochs))
                _print_run("ours", tag, t, ours_runs[our_seed])
            if speed:
                runs.append((i, rc_runs[rc_seed]["epochs"], ours_runs[our_seed]["epochs"]))

    label = models.label(args.model)
    sequential = models.MODELS[args.model][0].sequential
    n_train = len(inst["train"]) if sequential else len(ds.train)
    train_what = "instances" if sequential else "rows (every training interaction, as ReChorus trains a general model)"
    shape = ", ".join(f"{k} {v}" for k, v in model_cfg.to_dict().items() if k not in ("n_users", "n_items", "n_edges"))
    meta = {"command": command_line(args), "facts": {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores ({_cpu_model()}), CPU only; load average (1 min) "
                   f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "recsae commit": _commit(artifacts.repo_root(), "recsae_utils", "benchmarks"),
        "ReChorus commit": _commit(args.rechorus, "src"),
        "threads": f"torch intra-op {args.threads} on both sides (ReChorus: OMP_NUM_THREADS=MKL_NUM_THREADS="
                   f"{args.threads}; ours: torch.set_num_threads({torch.get_num_threads()})); ReChorus "
                   f"DataLoader workers {args.rechorus_workers}",
        "ReChorus stack": stack,
        "ours stack": f"torch {torch.__version__}, numpy {np.__version__}, pandas {pd.__version__}",
        "data": (f"{DATASETS[args.dataset]} from raw ml-1m ({args.data_dir}) by our data prep"
                 if args.dataset == "ml-1m" else f"{DATASETS[args.dataset]} ({args.data_dir}), user_id/item_id/time "
                 "only") + f", written in ReChorus format: train/dev/test {len(ds.train):,}/{len(ds.dev):,}/"
                 f"{len(ds.test):,} rows, {n_train:,} training {train_what}, dev/test "
                 f"instances {len(inst['dev']):,}/{len(inst['test']):,}, {ds.n_items - 1:,} items",
        "config": f"{label} ({shape}), lr {settings['lr']:g}, l2 {settings['l2']:g}, batch {settings['batch_size']}, "
                  "full-ranking dev eval (not timed)",
    }}
    if args.model in CUDA_ONLY:
        meta["facts"]["ReChorus on CPU"] = (f"its {label} calls .cuda() unconditionally, so main.py runs through "
                                            "`python -c CPU_LAUNCHER` (bench_vs_rechorus.py), which makes "
                                            "Tensor.cuda a no-op when CUDA is absent; ReChorus's files unchanged")
    if not speed:
        meta["facts"]["stopping"] = (f"both capped at {args.max_epochs} epoch(s) (a check, not a parity result)"
                                     if args.max_epochs else "each side's default: 200 epochs, stop after 10 "
                                     "epochs without a better dev NDCG@5 (ReChorus's rule on both sides)")
        meta["facts"]["ReChorus command"] = f"`(cd src && python {next(iter(rc_cmds.values()))})` per seed"
    heading = section_heading(args.model, args.dataset, args.mode, thread_setup(args.threads))
    record = {"model": args.model, "dataset": args.dataset, "mode": args.mode, "command": meta["command"],
              "facts": meta["facts"], "settings": settings, "model_config": model_cfg.to_dict(),
              "rechorus_commands": rc_cmds, "ours": ours_runs, "rechorus": rc_runs}
    if speed:
        section = markdown(runs, meta, heading)
        rc_s = [r["train_seconds"] for _, a, _ in runs for r in a]
        our_s = [r["train_seconds"] for _, _, b in runs for r in b]
        record["median_epoch_seconds"] = {"rechorus": float(np.median(rc_s)), "ours": float(np.median(our_s))}
        record["speed_ratio"] = float(np.median(rc_s) / np.median(our_s))
    else:
        summary = parity_summary(ours_runs, rc_runs)
        section = parity_markdown(summary, meta, heading)
        record["summary"] = summary
    print("\n" + section)
    if args.out:
        upsert_section(args.out, section)
        print(f"wrote section '{heading[3:]}' of {args.out}")
    if args.json:
        key = json_key(args.model, args.dataset, args.mode, args.threads)
        upsert_json(args.json, key, record)
        print(f"wrote '{key}' of {args.json}")


if __name__ == "__main__":
    main()
