"""Benchmark: SASRec training time per epoch, ReChorus's own `main.py` against our `train_sasrec`, same files.

Both train the same model (1 layer, 1 head, d 64, history 20, lr 1e-4, l2 1e-6, batch 256, BPR with one
fresh negative per instance per epoch) on the same ML_1MTOPK files, which our data prep builds from raw
MovieLens-1M and writes in ReChorus's format (tab-separated train/dev/test.csv with user_id, item_id,
time). ReChorus evaluates with full ranking (`--test_all 1`, as we do), so dev/test need no neg_items.
Runs alternate (ReChorus, ours, ReChorus, ours, ...) so that machine noise hits both; only the ratio
measured in one run means anything on a shared machine.

What each epoch time covers: ReChorus's `[x s]` after `loss=` in its log (BaseRunner.train: from the end
of the previous epoch's dev evaluation to the end of `fit`, i.e. gc, negative sampling, the DataLoader
with its workers and every batch); ours is TrainResult.history's `train_seconds` (negative sampling,
shuffling and every batch). Dev evaluation is excluded from both. Both get the same torch intra-op thread
count: OMP_NUM_THREADS / MKL_NUM_THREADS in ReChorus's environment (checked by asking its python), and
torch.set_num_threads here. ReChorus also keeps its default DataLoader workers (5) unless told otherwise.

ReChorus is never copied into this repository: point the script at a checkout and a venv of its own,
which needs an older stack (np.int / np.object, removed in numpy 1.24). Made and tested with:

    git clone https://github.com/THUwangcy/ReChorus /work/rechorus    # tested at e58d752
    python3.11 -m venv /work/rechorus_venv
    /work/rechorus_venv/bin/pip install numpy==1.23.5 pandas==1.5.3 scipy==1.15.3 scikit-learn==1.7.2 \\
        PyYAML tqdm torch==2.13.0        # torch: the CPU build (add PyTorch's CPU wheel index if needed)

ReChorus runs unpatched; only its src/ is used (its data/ folder is not read).
Then, from this repository's root:

    RECSAE_DATA_DIR=../shared/data PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_vs_rechorus.py \\
        --rechorus /work/rechorus --rechorus-python /work/rechorus_venv/bin/python --epochs 3 --rounds 2 \\
        --out reports/benchmarks.md

`--out` replaces (or appends) the section "SASRec vs ReChorus" of that Markdown file, leaving the rest.
On a machine busy with other jobs, ReChorus's 5 DataLoader workers plus 2 torch threads on 2 cores
oversubscribe it badly; `--threads 1 --rechorus-workers 0` gives both sides one core each, serially.
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
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsae_utils import artifacts, data, sources, train

DATASET = "ML_1MTOPK"
SECTION = "## SASRec vs ReChorus"
# BaseRunner.train: 'Epoch {:<5} loss={:<.4f} [{:<3.1f} s]\tdev=({})', on stdout as is, in its log file
# after logging's 'INFO:root:'
EPOCH_LINE = re.compile(r"^(?:[A-Z]+:[\w.]*:)?Epoch (\d+)\s+loss=(\S+) \[([\d.]+) s\]\s+dev=\(([^)]*)\)", re.M)


# ---------------------------------------------------------------------------------------------------
# The shared input


def write_rechorus_dataset(ds: data.Dataset, folder: str | os.PathLike) -> Path:
    """Write `ds` as a ReChorus dataset folder: train/dev/test.csv, tab-separated, header user_id, item_id,
    time (BaseReader reads these three; SeqReader joins the splits back on exactly these columns)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s in sources.SPLITS:
        df = ds.split(s)[["user_id", "item_id", "time"]].astype(np.int64)
        artifacts.write_text(folder / f"{s}.csv", df.to_csv(sep="\t", index=False))
    return folder


def parse_rechorus_log(text: str) -> list[dict]:
    """Per-epoch rows {epoch, loss, train_seconds, dev} from ReChorus's log (dev: its metric string)."""
    rows = []
    for m in EPOCH_LINE.finditer(text):
        dev = dict(kv.split(":") for kv in m.group(4).split(",") if ":" in kv)
        rows.append({"epoch": int(m.group(1)), "loss": float(m.group(2)), "train_seconds": float(m.group(3)),
                     "dev": {k: float(v) for k, v in dev.items()}})
    return rows


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


def rechorus_command(python: str, data_root: Path, work: Path, epochs: int, seed: int, workers: int) -> list[str]:
    return [python, "main.py", "--model_name", "SASRec", "--emb_size", "64", "--num_layers", "1",
            "--num_heads", "1", "--lr", "1e-4", "--l2", "1e-6", "--history_max", "20", "--batch_size", "256",
            "--eval_batch_size", "256", "--epoch", str(epochs), "--early_stop", "0", "--test_all", "1",
            "--topk", "5,10,20,50", "--metric", "NDCG,HR", "--num_workers", str(workers),
            "--random_seed", str(seed), "--gpu", "", "--save_final_results", "0",
            "--path", str(data_root), "--dataset", DATASET,
            "--log_file", str(work / "rechorus.log"), "--model_path", str(work / "rechorus_model.pt")]


def run_rechorus(repo: Path, python: str, data_root: Path, work: Path, epochs: int, seed: int, threads: int,
                 workers: int) -> list[dict]:
    cmd = rechorus_command(python, data_root, work, epochs, seed, workers)
    log = work / "rechorus_stdout.txt"
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=repo / "src", env=rechorus_env(threads), stdout=f, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    rows = parse_rechorus_log(text)
    if r.returncode or len(rows) != epochs:
        sys.exit(f"error: ReChorus exited {r.returncode} with {len(rows)}/{epochs} epoch lines; command:\n"
                 f"  (cd {repo / 'src'} && {shlex.join(cmd)})\nlast output ({log}):\n{text[-3000:]}")
    return rows


def run_ours(ds: data.Dataset, inst: dict, epochs: int, seed: int, threads: int) -> list[dict]:
    """Our training as `make all` runs it on ML-1M (compiled batch loss: the pipeline's 200-epoch budget turns
    "auto" on; a few epochs alone would not), with the benchmark's thread count. The first epoch of a run
    includes compiling (seconds with a warm compile cache, under a minute cold)."""
    cfg = train.TrainConfig(max_epochs=epochs, early_stop=epochs + 1, seed=seed, device="cpu", threads=threads,
                            compile="on")
    res = train.train_sasrec(ds, inst, cfg, progress=False)
    return [{"epoch": h["epoch"], "loss": h["loss"], "train_seconds": h["train_seconds"], "dev": h["dev"]}
            for h in res.history]


# ---------------------------------------------------------------------------------------------------
# Report


def _git(repo: Path, *args: str) -> str:
    """Output of a git command in `repo`, "" when it fails (not a checkout, no git)."""
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def _commit(repo: Path, *paths: str) -> str:
    """Short commit of `repo`, noting uncommitted changes under `paths`."""
    head = _git(repo, "rev-parse", "--short=12", "HEAD") or "unknown"
    return head + (" (with uncommitted changes)" if _git(repo, "status", "--porcelain", "--", *paths) else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def markdown(runs: list[tuple[int, list[dict], list[dict]]], meta: dict) -> str:
    """The section: setup lines, then one row per (round, epoch) and the medians and their ratio."""
    rc = [r["train_seconds"] for _, a, _ in runs for r in a]
    ours = [r["train_seconds"] for _, _, b in runs for r in b]
    med_rc, med_ours = float(np.median(rc)), float(np.median(ours))
    out = [SECTION, "", f"`{meta['command']}`", ""]
    out += [f"- {k}: {v}" for k, v in meta["facts"].items()]
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


def upsert_section(path: Path, section: str) -> None:
    """Replace the section starting with SECTION (up to the next '## ' heading) in `path`, or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start < 0:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        new = text[:start] + section + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
    artifacts.write_text(path, new)


# ---------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rechorus", required=True, type=Path, help="checkout of THUwangcy/ReChorus")
    ap.add_argument("--rechorus-python", required=True, help="python of ReChorus's own venv")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per run (both)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (ReChorus run, our run)")
    ap.add_argument("--data-dir", default=os.environ.get("RECSAE_DATA_DIR", "../shared/data"),
                    help="folder with ml-1m/ (raw MovieLens-1M); default $RECSAE_DATA_DIR or ../shared/data")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads, both sides")
    ap.add_argument("--rechorus-workers", type=int, default=5, help="ReChorus --num_workers (its default: 5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of round 0 (round r uses seed + r), both sides")
    ap.add_argument("--out", type=Path, help="Markdown file whose 'SASRec vs ReChorus' section is (re)written")
    args = ap.parse_args()
    if args.epochs < 1 or args.rounds < 1:
        sys.exit("error: --epochs and --rounds must be >= 1")
    if not (args.rechorus / "src" / "main.py").is_file():
        sys.exit(f"error: {args.rechorus}: no src/main.py (expected a ReChorus checkout)")
    load0 = os.getloadavg()[0]  # other jobs on the machine slow both sides; the report states the load
    stack = rechorus_stack(args.rechorus_python, args.threads)
    torch.set_num_threads(args.threads)

    t0 = time.time()
    ds = data.build_ml1m(sources.resolve_source(args.data_dir, "ml-1m"), cache=Path(tempfile.gettempdir()))
    inst = data.build_instances(ds)
    print(f"data prep {time.time() - t0:.1f}s: {ds.counts()}; {len(inst['train']):,} training instances")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_vs_rechorus_") as tmp:
        root = Path(tmp)
        write_rechorus_dataset(ds, root / "data" / DATASET)
        for rnd in range(args.rounds):
            seed = args.seed + rnd
            work = root / f"round{rnd}"
            work.mkdir()
            t = time.time()
            a = run_rechorus(args.rechorus, args.rechorus_python, root / "data", work, args.epochs, seed,
                             args.threads, args.rechorus_workers)
            print(f"round {rnd} ReChorus ({time.time() - t:.0f}s wall): "
                  + ", ".join(f"{r['train_seconds']:.1f}s loss {r['loss']:.4f}" for r in a), flush=True)
            t = time.time()
            b = run_ours(ds, inst, args.epochs, seed, args.threads)
            print(f"round {rnd} ours ({time.time() - t:.0f}s wall): "
                  + ", ".join(f"{r['train_seconds']:.1f}s loss {r['loss']:.4f}" for r in b), flush=True)
            runs.append((rnd, a, b))

    cmd = " ".join(["benchmarks/bench_vs_rechorus.py", "--rechorus", str(args.rechorus), "--rechorus-python",
                    args.rechorus_python, "--epochs", str(args.epochs), "--rounds", str(args.rounds),
                    "--threads", str(args.threads), "--rechorus-workers", str(args.rechorus_workers)])
    meta = {"command": cmd, "facts": {
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
        "data": f"{DATASET} from raw ml-1m ({args.data_dir}) by our data prep, written in ReChorus format: "
                f"train/dev/test {len(ds.train):,}/{len(ds.dev):,}/{len(ds.test):,} rows, "
                f"{len(inst['train']):,} training instances, {ds.n_items - 1:,} items",
        "config": "SASRec 1 layer, 1 head, d 64, history 20, lr 1e-4, l2 1e-6, batch 256, full-ranking dev eval "
                  "(not timed)",
    }}
    section = markdown(runs, meta)
    print("\n" + section)
    if args.out:
        upsert_section(args.out, section)
        print(f"wrote section '{SECTION[3:]}' of {args.out}")


if __name__ == "__main__":
    main()
