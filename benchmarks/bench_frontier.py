"""The fidelity-interpretability frontier of SAE families and sizes (issue 13, item 4): a sweep, not part
of `make all`. Reads a finished run folder (h_u, SASRec seed 0, the data stage) read-only and writes every
fit and table under --out; rerunning skips fits already on disk (resumable).

For each family (topk, batchtopk, matryoshka) x (width, k) in the grid it fits an SAE on the cached train
h_u (the run's SAE settings from config.load, "openai" variant; --samples bounds the training vectors, a
seeded subset; the epoch with the lowest train FVU is kept, no dev selection, so dev and test stay
untouched), then measures:
  - NDCG@10 retention on dev and test with paired-bootstrap intervals (fidelity.retention) and test EV;
  - dead latents (never a value > 0 on the dictionary rows) and mean L0 (active = value > 0);
  - the share of active slots held by generic latents (the dictionary's generic flag, as specificity.py);
  - detection against the raw h_u dimensions at the same firing rate: median balanced accuracy (random
    negatives) and the share >= 0.8, SAE and raw, in two vocabularies: metadata only (what a label names:
    genres/categories, decades, popularity; the headline) and with exemplar items (det_*_exemplars);
  - steerability (steering.measure: label-share gain at beta = 1 against random directions), if --steer-units;
  - seed stability for the --stable configs: share of latents matched at decoder cosine >= 0.9 / 0.7
    across seeds (stability.match_decoders), mean over the seed pairs.
The original study's SAE (2,048 x k32 TopK) is always in the grid, as the named reference row.

Default grid, a subset of {1024, 2048, 4096} x {8, 16, 32}: each family at 1024xk8 (the run's alt size),
2048xk16 (half the default's k: the issue's dense-core question) and 4096xk16 (wider at the same k), plus
the reference 2048xk32 for TopK. k = 32 is half of h_u's 64 dimensions; the reference row covers it.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_frontier.py --run-dir /work/runs/ml-1m --out /tmp/frontier
    # a quick trial: --grid topk:1024:8,batchtopk:1024:8 --samples 50000 --epochs 2 --dict-rows 50000
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_steering import load_run  # noqa: E402  (the run folder, read-only)

from recsae_utils import artifacts, concepts, config, fidelity, metrics, stages  # noqa: E402
from recsae_utils import detection as DT  # noqa: E402
from recsae_utils import dictionary as DI  # noqa: E402
from recsae_utils import interventions as I  # noqa: E402
from recsae_utils import sae as S  # noqa: E402
from recsae_utils import stability, steering, tables  # noqa: E402
from recsae_utils.cards import latent_cards  # noqa: E402
from recsae_utils.train import rank_targets  # noqa: E402

REFERENCE = ("topk", 2048, 32)
DEFAULT_GRID = [(f, m, k) for f in ("topk", "batchtopk", "matryoshka") for m, k in ((1024, 8), (2048, 16), (4096, 16))]


def detect(idx_tr, val_tr, hist_tr, idx_he, val_he, hist_he, items, m, top_n, seed, vocabularies):
    """One dictionary on the training codes, then held-out detection (all firings) in each vocabulary:
    (dictionary, {vocabulary: score_summary}). 'metadata' = what a label names (genres/categories, decades,
    popularity; no items), 'exemplars' = the signature with its exemplar items too."""
    d = DI.build_dictionaries(idx_tr, val_tr, hist_tr, items, m, top_n=top_n)
    cards = latent_cards(d)
    live = d.stats.n_fire > 0
    return d, {v: DT.score_summary(DT.vocabulary_scores(d, cards, idx_he, val_he, hist_he, v, seed,
                                                        firings={"all": 0.0})["all"], live)
               for v in vocabularies}


VOCABULARIES = ("metadata", "exemplars")  # the first is the headline


def parse_grid(s: str | None) -> list[tuple[str, int, int]]:
    grid = DEFAULT_GRID if not s else [(f, int(m), int(k)) for f, m, k in (p.split(":") for p in s.split(","))]
    return grid + [REFERENCE] if REFERENCE not in grid else grid


def fit(out: Path, base: S.SAEConfig, family: str, m: int, k: int, seed: int, x: torch.Tensor) -> S.TopKSAE:
    """One SAE, or the one already on disk (done.json written after a finished fit)."""
    d = out / "fits" / f"{family}_m{m}_k{k}_seed{seed}"
    cfg = dataclasses.replace(base, family=family, n_latents=m, k=k, seed=seed)
    if (d / "done.json").exists() and artifacts.read_json(d / "done.json").get("config") == cfg.to_dict():
        return S.load_sae(d / "sae.safetensors")
    t0 = time.time()
    res = S.fit_sae(x, cfg, out_dir=d, progress=False)
    artifacts.write_json(d / "done.json", {"config": cfg.to_dict(), "seconds": time.time() - t0, "n_train": len(x),
                                           "best_epoch": res.best_epoch})
    return res.sae


def evaluate(sae, r, ranks_orig, rows_tr, a, cfg) -> dict:
    inst, h, E = r["inst"], r["h"], r["E"]
    out = {}
    for s in ("dev", "test"):
        x_hat = S.reconstruct(sae, h[s])
        ret = fidelity.retention(ranks_orig[s], rank_targets(E, x_hat, inst[s], r["mask"]))
        out.update({f"retention_{s}": ret["retention"], f"retention_{s}_lo": ret["retention_ci_low"],
                    f"retention_{s}_hi": ret["retention_ci_high"]})
        if s == "test":
            out["ev_test"] = metrics.reconstruction_metrics(h[s], x_hat)["explained_variance"]
    i_tr, v_tr = S.encode_sparse(sae, h["train"][rows_tr])
    i_he, v_he = S.encode_sparse(sae, h["test"])
    hist_tr, hist_he = inst["train"].hist[rows_tr], inst["test"].hist
    m = sae.cfg.n_latents
    d, det = detect(i_tr, v_tr, hist_tr, i_he, v_he, hist_he, r["ds"].items, m, cfg.top_n, a.seed, VOCABULARIES)
    active = v_tr > 0
    out.update(l0=float(active.sum(1).mean()), dead=float((d.stats.n_fire == 0).mean()),
               generic_latents=int(d.generic.sum()),
               generic_slot_share=concepts.generic_slot_share(d))
    raw = DT.raw_dimension_codes(h["train"][rows_tr].numpy(), h["test"].numpy(), sae.cfg.k, m)
    _, det_raw = detect(raw[0], raw[1], hist_tr, raw[2], raw[3], hist_he, r["ds"].items, raw[4], cfg.top_n, a.seed,
                        VOCABULARIES)
    for v in VOCABULARIES:
        tag = "" if v == VOCABULARIES[0] else f"_{v}"
        out.update({f"det_median_sae{tag}": det[v]["median_bal_acc_random"],
                    f"det_share08_sae{tag}": det[v]["share_bal_acc_ge_0.8_random"],
                    f"det_median_raw{tag}": det_raw[v]["median_bal_acc_random"],
                    f"det_share08_raw{tag}": det_raw[v]["share_bal_acc_ge_0.8_random"],
                    f"det_gain{tag}": det[v]["median_bal_acc_random"] - det_raw[v]["median_bal_acc_random"]})
    if a.steer_units:
        te = inst["test"]
        sctx = I.steering_context(E, sae, h["test"], te.user, te.item, r["mask"], r["ds"].items)
        rows = np.sort(np.random.default_rng(a.seed).choice(len(h["test"]), min(a.steer_rows, len(h["test"])),
                                                            replace=False))
        dirs = steering.Directions(sae.W_dec.detach().float(), i_tr, v_tr, i_he, v_he)
        res = steering.measure(sctx, rows, dirs, d, a.steer_units, a.steer_random, a.seed)
        out["steerable"] = float(res.steer["steerable"].mean()) if len(res.steer) else float("nan")
    return out


def frontier_figure(df: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, (fam, g) in enumerate(df.groupby("family", sort=False)):
        ax.errorbar(g["det_gain"], g["retention_test"], yerr=[g["retention_test"] - g["retention_test_lo"],
                    g["retention_test_hi"] - g["retention_test"]], fmt="o", color=f"C{i}", label=fam, capsize=2)
        for _, row in g.iterrows():
            ax.annotate(f"{row['width']}xk{row['k']}" + (" (reference)" if row["reference"] else ""),
                        (row["det_gain"], row["retention_test"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="detection: median balanced accuracy, SAE - raw dims", ylabel="test NDCG@10 retention")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    with artifacts.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format="png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", default="/work/runs/ml-1m")
    ap.add_argument("--out", required=True)
    ap.add_argument("--grid", help="family:width:k,... (default: the module docstring's subset)")
    ap.add_argument("--samples", type=int, default=0, help="SAE training vectors (seeded subset; 0 = all)")
    ap.add_argument("--epochs", type=int, default=0, help="0 = the run's budget (config sae_samples)")
    ap.add_argument("--dict-rows", type=int, default=0, help="train rows for dictionaries (0 = all)")
    ap.add_argument("--steer-units", type=int, default=0, help="units per SAE for steerability (0 = skip)")
    ap.add_argument("--steer-rows", type=int, default=300)
    ap.add_argument("--steer-random", type=int, default=100)
    ap.add_argument("--stable", default="", help="family:width:k,... fitted with --stable-seeds more seeds")
    ap.add_argument("--stable-seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="full")
    ap.add_argument("--fit-only", action="store_true", help="fit (or find) every SAE of the grid and stop")
    a = ap.parse_args()
    out = Path(a.out)
    run = Path(a.run_dir)
    cfg = config.load(run.name, a.profile)
    r = load_run(run, cfg)
    r["h"]["dev"] = torch.from_numpy(np.load(run / "hu" / "dev.npy"))  # load_run keeps train and test only
    h_tr = r["h"]["train"]
    rng = np.random.default_rng(a.seed)
    x = h_tr[np.sort(rng.choice(len(h_tr), a.samples, replace=False))] if 0 < a.samples < len(h_tr) else h_tr
    rows_tr = np.sort(rng.choice(len(h_tr), a.dict_rows, replace=False)) if 0 < a.dict_rows < len(h_tr) \
        else np.arange(len(h_tr))
    base = stages.sae_config(cfg, h_tr.shape[1], len(x), cfg.sae_latents, cfg.sae_k, "openai")
    if a.epochs:
        base = dataclasses.replace(base, epochs=a.epochs)
    stable = {(f, int(m), int(k)) for f, m, k in (p.split(":") for p in a.stable.split(",") if p)}
    if a.fit_only:  # the slow part alone, e.g. while the detection vocabulary is still being settled
        for fam, m, k in parse_grid(a.grid):
            for s in range(a.stable_seeds if (fam, m, k) in stable else 1):
                t0 = time.time()
                fit(out, base, fam, m, k, a.seed + s, x)
                print(f"fitted {fam} {m}xk{k} seed {a.seed + s} ({time.time() - t0:.0f}s)", flush=True)
        return
    ranks_orig = {s: rank_targets(r["E"], r["h"][s], r["inst"][s], r["mask"]) for s in ("dev", "test")}
    rows = []
    for fam, m, k in parse_grid(a.grid):
        t0 = time.time()
        sae = fit(out, base, fam, m, k, a.seed, x)
        t1 = time.time()
        row = {"family": fam, "width": m, "k": k, "reference": (fam, m, k) == REFERENCE,
               **evaluate(sae, r, ranks_orig, rows_tr, a, cfg)}
        if (fam, m, k) in stable:
            W = [sae.W_dec.detach().numpy()] + [fit(out, base, fam, m, k, a.seed + s, x).W_dec.detach().numpy()
                                                for s in range(1, a.stable_seeds)]
            sh = [stability.match_decoders(W[i], W[j]).shares() for i in range(len(W)) for j in range(i + 1, len(W))]
            row.update({f"seed_{key}": float(np.mean([s[key] for s in sh])) for key in sh[0]})
        row["fit_s"], row["eval_s"] = round(t1 - t0, 1), round(time.time() - t1, 1)
        rows.append(row)
        print(f"{fam} {m}xk{k}: retention test {row['retention_test']:.3f}, det gain {row['det_gain']:+.3f}, "
              f"generic slots {row['generic_slot_share']:.3f} ({row['fit_s']:.0f}s fit, {row['eval_s']:.0f}s eval)",
              flush=True)
    df = pd.DataFrame(rows)
    note = (f"run {run}, detection (test, all firings, random negatives): metadata-only labels, exemplars beside; SAE training vectors {len(x)}, epochs {base.epochs}, "
            f"dictionary rows {len(rows_tr)}; retention intervals: paired bootstrap 95%")
    body = tables.table(list(df.columns), [[tables.fmt(v, 4) for v in r] for r in df.itertuples(index=False)])
    artifacts.write_text(out / "frontier.md", f"# SAE frontier\n\n{note}\n\n{body}")
    artifacts.write_text(out / "frontier.csv", df.to_csv(index=False))
    frontier_figure(df, out / "frontier.png")
    pd.set_option("display.width", 250, "display.max_columns", 40, "display.precision", 3)
    print(note)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
