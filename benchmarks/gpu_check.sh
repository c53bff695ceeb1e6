#!/usr/bin/env bash
# The whole ML-1M pipeline (stages 01-06, default settings) on one GPU in one command; prints each stage's
# time and the test metrics, to compare with the CPU run in reports/ml-1m/ (same seed: expect seed-level
# noise, since float kernels differ between devices).
#
# The GPU machine has no network and its own Python (3.12, with a CUDA PyTorch), so this runs in two steps:
#   1. here, with the package registry and the data:
#        benchmarks/gpu_check.sh prepare [DATA_DIR]       # default DATA_DIR: $RECSAE_DATA_DIR or ../shared/data
#      writes .gpu/ (git-ignored): wheels of the packages the GPU image lacks (papermill, ipykernel, openai,
#      pooch and what they need, for CPython 3.12 x86-64) and ml-1m.zip made from DATA_DIR/ml-1m (~6 MB).
#   2. there, with .gpu carried along (the device tool: carry [".gpu"], command below; OUT = where to write):
#        benchmarks/gpu_check.sh run [OUT]
#      makes a venv over the image's packages, installs the wheels offline, runs
#      `python -m recsae_utils.pipeline ml-1m` with RECSAE_DEVICE=cuda and prints stage times and metrics.
#      Its log, run.json and summary.json go to OUT (default $OUT, else .gpu/out).
set -euo pipefail
cd "$(dirname "$0")/.."
G=.gpu
PKGS="papermill nbclient nbformat ipykernel jupyter_client openai pooch tqdm safetensors"

prepare() {
  local data="${1:-${RECSAE_DATA_DIR:-../shared/data}}"
  [ -f "$data/ml-1m/ratings.dat" ] || { echo "prepare: $data/ml-1m/ratings.dat not found (give DATA_DIR)" >&2; exit 2; }
  rm -rf "$G/wheels" "$G/data"; mkdir -p "$G/wheels" "$G/data"
  python3 -m pip download -q --dest "$G/wheels" --only-binary=:all: --implementation cp --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any $PKGS
  # the image already has these (KINDS.md); their wheels would only add weight to the carried tree
  rm -f "$G"/wheels/{numpy,pandas,pyarrow,scipy,matplotlib,torch,pillow,fonttools,kiwisolver,contourpy}-*.whl
  (cd "$data" && zip -q -r - ml-1m/ratings.dat ml-1m/movies.dat ml-1m/users.dat) > "$G/data/ml-1m.zip"
  du -sh "$G"
}

run() {
  local out="${1:-${OUT:-$G/out}}"
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -m venv --system-site-packages "$G/venv"
  "$G/venv/bin/python" -m pip install -q --no-index --find-links "$G/wheels" $PKGS
  local py="$G/venv/bin/python"
  "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
  export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg RECSAE_DEVICE=cuda RECSAE_DATA_DIR="$PWD/$G/data" \
         RECSAE_RUN_ROOT="$PWD/$G/runs" RECSAE_REPORT_ROOT="$PWD/$G/reports" RECSAE_CACHE_DIR="$PWD/$G/cache"
  local t0=$SECONDS
  "$py" -m recsae_utils.pipeline ml-1m 2>&1 | tee "$out/gpu_pipeline.log"
  echo "whole ML-1M pipeline on the GPU: $((SECONDS - t0)) s"
  cp "$G/reports/ml-1m/run.json" "$G/reports/ml-1m/summary.json" "$out/" 2>/dev/null || true
  "$py" - "$G/reports/ml-1m" <<'EOF'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
run, s = json.loads((d / "run.json").read_text()), json.loads((d / "summary.json").read_text())
for st in run["stages"]:
    print(f"{st['stage']:<20} {st['seconds']:7.1f} s")
seed = next(iter(s["sasrec"]["seeds"].values()))
print("SASRec test", {k: round(v, 4) for k, v in seed["test"].items()}, "best epoch", seed["best_epoch"])
fid = s["sae"]["main"]["fidelity"]
print("RecSAE test NDCG@10 retention", round(fid["retention"], 4), "dev", round(fid["retention_dev"], 4))
EOF
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 prepare [DATA_DIR] | run [OUT]" >&2; exit 2 ;;
esac
