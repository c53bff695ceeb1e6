"""Label precision on a finished run folder, without the pipeline: the SAE's and both baselines' (raw h_u
dimensions, random SAE) dictionaries rebuilt from the run's cached codes, labelled by the offline-shared
labeler and, for the SAE, by the enrichment labeler it replaces; prints `concepts.label_precision` (the
summary's `label_precision` section) and a few example labels.

    RECSAE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/label_precision.py ml-1m \\
        --run-dir runs/ml-1m [--latents 24,1599]

The run folder is only read: its files are linked into a temporary folder that the stage code reads (and
writes any cache it needs to), so a finished run is never changed."""
import argparse
import json
import os
import tempfile
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("dataset")
ap.add_argument("--run-dir", type=Path, required=True)
ap.add_argument("--latents", default="", help="comma-separated latents whose labels to print")
args = ap.parse_args()

tmp = Path(tempfile.mkdtemp(prefix="label_precision_"))
src = args.run_dir.resolve()
for sub in ("sasrec", "hu", "activations", "sae", "codes/random", "data"):
    for f in (src / sub).rglob("*"):
        if f.is_file():
            dst = tmp / "runs" / args.dataset / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(f)   # an atomic write replaces the link, never the run's file
os.environ["RECSAE_RUN_ROOT"] = str(tmp / "runs")
os.environ["RECSAE_REPORT_ROOT"] = str(tmp / "reports")

from recsae_utils import cards as crd, concepts, config, naming, recsae  # noqa: E402

cfg = config.load(args.dataset, "")
ctx = recsae.stage_inputs(cfg)
sae = recsae.fit_stage(cfg, ctx, *recsae.fit_plan(cfg)["main"]).sae
acts = recsae.activation_arrays(cfg, ctx, sae)
ctx, acts = recsae.dictionary_sample(cfg, ctx, acts)
models = concepts.model_codes(cfg, ctx, {"main": sae}, acts)
built = concepts.dictionaries(cfg, ctx, models)
b = built["sae"]
b.cards[:] = concepts.with_output_side(b.cards, b.d, sae.W_dec.detach().numpy(), ctx.model.item_table().detach().numpy())
print(json.dumps(concepts.label_precision(models, built, concepts.held_histories(ctx)), indent=1))
vocab = naming.vocabulary_of(b.d)
by_latent = {c["latent"]: c for c in b.cards}
for j in [int(x) for x in args.latents.split(",") if x]:
    c = by_latent[j]
    print(f"\n#{j} before: {crd.offline_label(c)['name']}\n#{j} after:  {naming.shared_label(c, vocab)['name']}")
    print("   top 10 by count:", "; ".join(f"{it['title'] or 'item ' + str(it['item_id'])} "
                                           f"[{'/'.join(it['genres'])}]" for it in c["top_by_count"][:10]))
