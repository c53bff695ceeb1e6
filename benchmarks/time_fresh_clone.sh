#!/usr/bin/env bash
# Time `make all` for one dataset from a fresh clone of this checkout's HEAD, then the rerun with nothing
# changed (the pipeline's two time targets). The one-time install is excluded: the clone links this
# checkout's .venv. The torch compile cache is emptied first, as on a fresh machine.
#   benchmarks/time_fresh_clone.sh ml-1m [DATA_DIR]      # DATA_DIR default: $RECSAE_DATA_DIR or ../shared/data
set -euo pipefail
DS=$1
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(cd "${2:-${RECSAE_DATA_DIR:-$REPO/../shared/data}}" && pwd)
WORK=$(mktemp -d)/recsae
git clone -q "$REPO" "$WORK" && cd "$WORK"
ln -s "$REPO/.venv" .venv
touch -d 2000-01-01 requirements.txt pyproject.toml   # older than the install stamp: make does not reinstall
rm -rf "/tmp/torchinductor_$(id -un)"
export PYTHONPATH=$PWD RECSAE_DATA_DIR=$DATA
echo "commit $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s); make all DATASETS="$DS"; t1=$(date +%s)
echo "FRESH $DS: $((t1 - t0)) s  load $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s); make all DATASETS="$DS" > rerun.log 2>&1; t1=$(date +%s)
echo "RERUN $DS: $((t1 - t0)) s"
