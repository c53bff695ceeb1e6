"""Scaling: wall time and peak memory of every pipeline stage at 1x, 4x, 16x ML-1M's size.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py [--scales 1,4,16] [--until 06] [--work /tmp/recsae_scale]
        [--out reports/benchmarks_scaling.md] [--timeout 3600] [--note TEXT] [--report-only]

For each scale: writes MovieLens-shaped synthetic data (recsae_utils.synthetic.write_scaled_movielens;
users and movies both x scale, so about scale million ratings) under --work, then runs the real pipeline
(`python -m recsae_utils.pipeline ml-1m --profile scale --force`: one SASRec epoch, one SAE epoch, the
published model sizes) with RECSAE_DATA_DIR / RECSAE_RUN_ROOT / RECSAE_REPORT_ROOT in --work, so nothing
touches runs/ or reports/. Stage times come from the run record (run.json); peak memory is sampled
(every 0.1 s, psutil) as the summed RSS of the pipeline's child processes (the notebook kernel) while
each stage runs, so a spike shorter than that can be missed. A scale whose pipeline fails or passes
--timeout keeps the stages it finished. Then prints a table, fits the log-log slope of time and memory
against training interactions per stage (> 1.15 is flagged as growing faster than linearly), and
writes the Markdown section and a log-log figure beside --out.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from recsae_utils import synthetic  # noqa: E402

STAGE_LINE = re.compile(r"\] (\d\d_\w+)\.ipynb \.\.\.$")
SUPERLINEAR = 1.15  # slope above which a stage counts as growing faster than the data


class PeakSampler(threading.Thread):
    """Peak summed RSS of `proc`'s descendants (the kernels), per stage named in `self.stage`."""

    def __init__(self, proc: subprocess.Popen, every: float = 0.1):
        super().__init__(daemon=True)
        self.proc, self.every = psutil.Process(proc.pid), every
        self.stage: str | None = None
        self.peak: dict[str, int] = {}
        self.root_peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                kids = self.proc.children(recursive=True)
                rss = sum(_rss(k) for k in kids)
                self.root_peak = max(self.root_peak, _rss(self.proc))
            except psutil.Error:
                continue
            if self.stage:
                self.peak[self.stage] = max(self.peak.get(self.stage, 0), rss)


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:
        return 0


def run_scale(scale: float, work: Path, until: str, timeout: float, seed: int) -> dict:
    data_dir = work / f"x{scale:g}" / "data"
    t0 = time.time()
    folder = synthetic.write_scaled_movielens(data_dir / "ml-1m", scale, seed=seed)
    gen_s = time.time() - t0
    n_ratings = sum(1 for _ in open(folder / "ratings.dat", "rb"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSAE_")}
    env.update(RECSAE_DATA_DIR=str(data_dir), RECSAE_RUN_ROOT=str(work / f"x{scale:g}" / "runs"),
               RECSAE_REPORT_ROOT=str(work / f"x{scale:g}" / "reports"), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "recsae_utils.pipeline", "ml-1m", "--profile", "scale", "--force", "--until", until]
    print(f"\n== scale {scale:g}: {n_ratings:,} ratings written in {gen_s:.1f}s; {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = PeakSampler(proc)
    sampler.start()
    starts, log = {}, []
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    for line in proc.stdout:
        log.append(line)
        if m := STAGE_LINE.search(line.strip()):
            sampler.stage = m.group(1)
            starts[m.group(1)] = time.time()
        if "· " not in line:  # the stage progress lines are many; keep the console short
            print("   " + line.rstrip(), flush=True)
    rc = proc.wait()
    killer.cancel()
    sampler.stop.set()
    sampler.join()
    run_json = work / f"x{scale:g}" / "reports" / "ml-1m" / "run.json"
    rows = {}
    if rc == 0 and run_json.exists():
        for r in json.loads(run_json.read_text())["stages"]:
            rows[r["stage"]] = r["seconds"]
    else:  # failed or timed out: stages that finished are those a later stage started after
        names = list(starts)
        for a, b in zip(names, names[1:]):
            rows[a] = starts[b] - starts[a]
        print(f"   scale {scale:g}: pipeline exit {rc}; kept {len(rows)} finished stage(s). Last lines:\n"
              + "".join("   " + ln for ln in log[-15:]), flush=True)
    counts = {}
    summary = work / f"x{scale:g}" / "reports" / "ml-1m" / "summary.json"
    if summary.exists():
        counts = json.loads(summary.read_text()).get("data", {}).get("counts", {})
    return {"scale": scale, "ratings": n_ratings, "generate_s": gen_s, "rc": rc,
            "train": counts.get("train", {}).get("interactions"), "users": counts.get("users"),
            "items": counts.get("items"), "seconds": rows,
            "peak_mb": {s: v / 2**20 for s, v in sampler.peak.items()}, "pipeline_peak_mb": sampler.root_peak / 2**20}


def slopes(results: list[dict], key: str) -> dict[str, float]:
    """Least-squares slope of log(value) against log(training interactions), per stage (>= 2 scales)."""
    out = {}
    for stage in sorted({s for r in results for s in r[key]}):
        pts = [(r["train"], r[key][stage]) for r in results if stage in r[key] and r["train"] and r[key][stage] > 0]
        if len(pts) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            out[stage] = float(np.polyfit(x, y, 1)[0])
    return out


def markdown(results: list[dict], machine: str, ram_gib: float = 0.0, note: str = "") -> str:
    stages = sorted({s for r in results for s in r["seconds"]} | {s for r in results for s in r["peak_mb"]})
    st, sm = slopes(results, "seconds"), slopes(results, "peak_mb")
    head = ["stage"] + [f"{r['scale']:g}x time (s)" for r in results] + [f"{r['scale']:g}x peak (MB)" for r in results]
    lines = ["## Scaling (`benchmarks/bench_scale.py`)", "",
             f"Synthetic MovieLens-shaped data (`synthetic.write_scaled_movielens`), pipeline profile `scale` (one SASRec "
             f"epoch, one SAE epoch, published model sizes), {machine}. Peak memory: summed RSS of the stage's kernel, "
             "sampled every 0.1 s. Slope: least-squares slope of log(time or memory) against log(training interactions); "
             f"> {SUPERLINEAR} is flagged. Timings on a shared machine are noisy."
             + (f" {note}" if note else ""), "",
             "| scale | ratings | train interactions | users | items | generate (s) | pipeline exit |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['scale']:g}x | {r['ratings']:,} | {r['train'] or 0:,} | {r['users'] or 0:,} | {r['items'] or 0:,} "
                     f"| {r['generate_s']:.1f} | {r['rc']} |")
    lines += ["", "| " + " | ".join(head + ["time slope", "memory slope"]) + " |",
              "|" + "---|" + "---:|" * (len(head) + 1)]
    for s in stages:
        cells = [f"{r['seconds'][s]:.1f}" if s in r["seconds"] else "—" for r in results]
        cells += [f"{r['peak_mb'][s]:,.0f}" if s in r["peak_mb"] else "—" for r in results]
        flag = lambda v: "—" if v is None else f"{v:.2f}" + (" **superlinear**" if v > SUPERLINEAR else "")  # noqa: E731
        lines.append(f"| {s} | " + " | ".join(cells + [flag(st.get(s)), flag(sm.get(s))]) + " |")
    lines += ["", *findings(results, st, ram_gib)]
    return "\n".join(lines) + "\n"


def findings(results: list[dict], time_slopes: dict[str, float], ram_gib: float) -> list[str]:
    """Plain sentences under the table: the largest peak against the machine's memory, the stages whose time
    grows faster than the data, and any scale whose pipeline did not finish."""
    out = []
    big = max(results, key=lambda r: r["scale"])
    if big["peak_mb"]:
        stage, mb = max(big["peak_mb"].items(), key=lambda kv: kv[1])
        fits = mb / 1024 <= ram_gib
        out.append(f"- Largest peak at {big['scale']:g}x: {mb / 1024:.1f} GiB in {stage}, "
                   + ("within" if fits else "**over**") + f" the machine's {ram_gib:.0f} GiB.")
    fast = {s: v for s, v in time_slopes.items() if v > SUPERLINEAR}
    out.append("- Time growing faster than linearly (slope > 1.15): "
               + (", ".join(f"{s} ({v:.2f})" for s, v in sorted(fast.items())) if fast else "none") + ".")
    failed = [f"{r['scale']:g}x (exit {r['rc']})" for r in results if r["rc"] != 0]
    if failed:
        out.append("- **Did not finish:** " + ", ".join(failed) + "; their rows hold the stages that did.")
    return out


def figure(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "seconds", "wall time (s)"), (axes[1], "peak_mb", "peak memory (MB)")):
        for stage in sorted({s for r in results for s in r[key]}):
            pts = [(r["train"], r[key][stage]) for r in results if stage in r[key] and r["train"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=stage)
        xs = sorted(r["train"] for r in results if r["train"])
        ys = [v for r in results if r["train"] == xs[0] for v in r[key].values()] if xs else []
        if len(xs) >= 2 and ys:  # slope 1 (linear growth) from the smallest value at the smallest size
            ax.plot(xs, [min(ys) * x / xs[0] for x in xs], "k:", lw=1, label="linear")
        ax.set(xscale="log", yscale="log", xlabel="training interactions", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--until", default="06", help="last stage to run, e.g. 03")
    ap.add_argument("--work", type=Path, default=Path("/tmp/recsae_scale"))
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks_scaling.md")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per scale before its pipeline is stopped")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true", help="run nothing: rewrite --out from --work's results.json")
    ap.add_argument("--note", default="", help="a sentence printed under the first table (e.g. what else ran)")
    args = ap.parse_args(argv)
    results_path = args.work / "results.json"
    done = {r["scale"]: r for r in json.loads(results_path.read_text())} if results_path.exists() else {}
    for s in [] if args.report_only else [float(x) for x in args.scales.split(",")]:
        done[s] = run_scale(s, args.work, args.until, args.timeout, args.seed)
        results_path.write_text(json.dumps(sorted(done.values(), key=lambda r: r["scale"]), indent=1))
    results = sorted(done.values(), key=lambda r: r["scale"])
    machine = f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    md = markdown(results, machine, psutil.virtual_memory().total / 2**30, args.note)
    print("\n" + md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig_path = args.out.with_suffix(".png")
    figure(results, fig_path)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")  # every number, for scripts
    args.out.write_text(md + f"\n![time and peak memory against training interactions]({fig_path.name})\n")
    print(f"wrote {args.out} and {fig_path}; raw results in {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
