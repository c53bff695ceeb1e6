"""Recompute stage 07 (the concept yardstick) on a finished run folder and print how its summary differs from
the committed reports/<dataset>/summary.json, timings aside: the "same numbers on a rerun" check.

    RECSAE_DATA_DIR=../shared/data RECSAE_SEEDS=0,1,2 RECSAE_ABLATIONS=1 RECSAE_REPORT_ROOT=/tmp/rerun \\
        OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rerun_yardstick.py ml-1m

RECSAE_REPORT_ROOT points away from reports/ so that nothing committed is touched; the settings must be those
of the run that wrote the report (its run.json)."""
import json
import sys
from pathlib import Path

from recsae_utils import comparison, config, reports, stages

ds = sys.argv[1]
cfg = config.load(ds, "")
ctx = stages.stage_inputs(cfg)
sae = stages.fit_stage(cfg, ctx, *stages.fit_plan(cfg)["main"]).sae
acts = stages.activation_arrays(cfg, ctx, sae)
ctx, acts = stages.dictionary_sample(cfg, ctx, acts)
new = json.loads(json.dumps(comparison.summary(comparison.run_stage(cfg, ctx, sae, acts))))
old = json.loads((Path(__file__).resolve().parents[1] / "reports" / ds / "summary.json").read_text())["yardstick"]
diffs = [d for d in reports.diff_summaries(old, new) if not reports.is_timing(d[0])]
print(f"{ds}: {len(diffs)} differences outside timings")
for d in diffs[:20]:
    print(d)
