"""The concept browser's steering playground on a finished run: page size and float16 agreement.

Reads a run folder (read-only) and its committed concept browser, adds the playground block
(`playground.playground_data`: default SAE, SASRec, test instances) to the page's own payload, writes the
page to --out and prints its size; then, for --n-edits random steering edits (1 or 2 live latents, doses in
-2..2) on the playground's users, how often the page's float16 arrays give the same top 10 as
`interventions.recommend` on the float32 originals. With --chromium (needs /usr/bin/chromium): the page
itself, in headless Chromium, runs SASRec on --n-histories random typed histories, against Python's h_u.

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
    ap.add_argument("--chromium", action="store_true")
    ap.add_argument("--n-histories", type=int, default=5)
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
    if a.chromium:
        in_chromium(a.out, model, pg, half, live, a.n_histories)


def in_chromium(page: Path, model, pg: dict, half, live: np.ndarray, n: int) -> None:
    """The page itself (tests/test_browser.py's Chromium client): n random steering edits against
    `interventions.recommend` on the float16 arrays it holds, and its SASRec forward pass on n random typed
    histories against Python's h_u."""
    import os
    import signal
    import subprocess
    import tempfile
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_browser as tb

    ud = Path(tempfile.mkdtemp())
    proc = subprocess.Popen(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--user-data-dir={ud}", "--remote-debugging-port=0", "--remote-allow-origins=*",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = ud / "DevToolsActivePort"
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        cdp = tb.CDP(f"ws://127.0.0.1:{port}{path}")
        target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
        cdp.session = cdp.call("Target.attachToTarget", browser_level=True, targetId=target, flatten=True)["sessionId"]
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        tb._load(cdp, page.resolve().as_uri())
        rng = np.random.default_rng(0)
        same = 0
        for _ in range(n):
            u = int(rng.choice(pg["users"]))
            steer = {int(j): round(float(rng.uniform(-2, 2)), 2) for j in rng.choice(live, 2, replace=False)}
            cdp.js(f"window.recsaeBrowser.playground.pickUser('{u}'); window.recsaeBrowser.playground.state.doses = {{}}")
            for j, b in steer.items():
                cdp.js(f"window.recsaeBrowser.playground.setDose({j}, {b})")
            got = cdp.js("window.recsaeBrowser.playground.result().after")
            same += got == I.recommend(half, u, steer=steer)["item_after"].tolist()
        print(f"{n} random edits of two latents in the page: top 10 equal to recommend() on its float16 arrays in {same}/{n}")
        for _ in range(n):
            items = [int(x) for x in rng.choice(np.arange(1, pg["n_items"]), int(rng.integers(1, 21)), replace=False)]
            cdp.js("window.recsaeBrowser.playground.state.history = []")
            for i in items:
                cdp.js(f"window.recsaeBrowser.playground.addItem({i})")
            got = np.asarray(cdp.js("window.recsaeBrowser.playground.h()"))
            with torch.no_grad():
                want = model.user_repr(torch.tensor([items[::-1]])).numpy()[0]
            print(f"typed history of {len(items):2d}: max |h_page - h_python| / max |h_python| = "
                  f"{np.abs(got - want).max() / np.abs(want).max():.1e}")
        print("page errors:", tb._errors(cdp) or "none")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
