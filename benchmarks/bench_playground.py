"""The concept browser's steering playground on a finished run: page size and float16 agreement.

Reads a run folder (read-only) and its committed concept browser, adds the playground block
(`playground.playground_data`: default SAE, SASRec, test instances) to the page's own payload, writes the
page to --out and prints its size; then, for --n-edits random steering edits (1 or 2 live latents, doses in
-2..2) on the playground's users, how often the page's float16 arrays give the same top 10 as
`interventions.recommend` on the float32 originals.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_playground.py runs/ml-1m \
        reports/ml-1m/concept_browser.html --out /tmp/pg/ml-1m.html
"""
from __future__ import annotations

import argparse
import base64
import gzip
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_steering import load_run  # noqa: E402

from recsae_utils import browser, config, train  # noqa: E402
from recsae_utils import interventions as I  # noqa: E402
from recsae_utils import playground as PG  # noqa: E402


def page_payload(path: Path) -> dict:
    m = re.search(r'id="recsae-data" data-encoding="gzip-base64">([^<]*)</script>', path.read_text(encoding="utf-8"))
    if not m:
        raise SystemExit(f"{path}: no gzip-base64 payload")
    return json.loads(gzip.decompress(base64.b64decode(m.group(1))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("page", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--max-users", type=int, default=PG.MAX_USERS)
    ap.add_argument("--n-edits", type=int, default=200)
    a = ap.parse_args()
    cfg = config.load(a.dataset)
    r = load_run(a.run, cfg)
    te = r["inst"]["test"]
    ctx = I.steering_context(r["E"], r["sae"], r["h"]["test"], te.user, te.item, r["mask"], r["ds"].items)
    model = train.load_sasrec(a.run / "sasrec" / f"seed{cfg.seeds[0]}" / "sasrec.safetensors")
    pg = PG.playground_data(ctx, model, max_users=a.max_users)
    D = page_payload(a.page)
    extra = browser.browser_data({"latents": pd.DataFrame({"latent": []})}, items=r["ds"].items, playground=pg)
    D["items"] = {**extra["items"], **D["items"]}
    D["pg"] = pg
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(browser.render_html(D), encoding="utf-8")
    before, after = a.page.stat().st_size, a.out.stat().st_size
    print(f"page: {before / 1e6:.3f} MB committed -> {after / 1e6:.3f} MB with the playground "
          f"({len(pg['users'])} of {pg['n_users_all']} users, SASRec weights included); "
          f"{'within' if after <= browser.PLAYGROUND_BUDGET_MB * 1e6 else 'over'} the "
          f"{browser.PLAYGROUND_BUDGET_MB:g} MB budget (over it, write_browser leaves the playground out)")
    parts = {k: len(json.dumps(v)) for k, v in pg.items() if isinstance(v, (str, dict))}
    print("playground block, characters before gzip:", parts)

    # float16 (the page) against float32 (Python) on the same edits
    half = I.SteeringContext(torch.from_numpy(PG.half(ctx.E)), torch.from_numpy(PG.half(ctx.W_dec)),
                             torch.from_numpy(PG.half(ctx.h)), ctx.z_idx, ctx.z_val, ctx.users, ctx.targets,
                             ctx.mask, ctx.h_norm, ctx.items)
    rng = np.random.default_rng(0)
    live = np.flatnonzero(np.asarray(r["sae"].W_dec.detach().norm(dim=1)) > 0)
    same = overlap = 0
    for _ in range(a.n_edits):
        u = int(rng.choice(pg["users"]))
        steer = {int(j): float(rng.uniform(-2, 2)) for j in rng.choice(live, rng.integers(1, 3), replace=False)}
        x = I.recommend(ctx, u, steer=steer)["item_after"].to_numpy()
        y = I.recommend(half, u, steer=steer)["item_after"].to_numpy()
        same += bool((x == y).all())
        overlap += len(set(x) & set(y))
    print(f"{a.n_edits} random edits: identical top 10 (order too) in {same}/{a.n_edits}; "
          f"mean overlap {overlap / a.n_edits:.2f} of 10")


if __name__ == "__main__":
    main()
