"""Why labels are built from all of a latent's firings: two quality tables on the finished ML-1M run.

1. Oracles (no label): per latent, score a held-out (dev + test) sequence by the latent's TRAINING firing
   rate given the sequence's last item (shrunk towards the latent's base rate), and by a naive-Bayes sum of
   the shrunk log-lift of every item in the window. Median held-out ROC-AUC over latents with >= 5 held-out
   positives. A last-item oracle near 1 means the latent is almost a function of the last item.
2. Label pool x exemplars: whole-history offline detection (median balanced accuracy, random negatives;
   `concepts.score_summary`) when the item tables behind a label come from the top-N firings or from all
   of them (`item_pool`), and the offline label names up to 5, 10 or 20 exemplar items.

Models: the run's main SAE, the signed raw h_u dimensions at its firing rate and a random SAE of its shape
(`concepts.model_codes`), exactly as stage 05 builds them.

    RECSAE_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_label_pool.py   # after `make all`
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy.stats import rankdata

from recsae_utils import cards as crd, concepts, detection as dtc, dictionary as dic
from recsae_utils import config, stages

POOLS = ((50, 5), (50, 20), (1000, 10), (0, 10), (0, 20))   # (item_pool, exemplars); 0 = all firings


def median_auc(S: np.ndarray, P: np.ndarray, min_pos: int = 5) -> float:
    """Median over columns of the ROC-AUC of scores S against positives P (ties count 1/2)."""
    out = []
    for j in range(S.shape[1]):
        npos = int(P[:, j].sum())
        nneg = len(P) - npos
        if npos >= min_pos and nneg:
            r = rankdata(S[:, j])
            out.append((r[P[:, j]].sum() - npos * (npos + 1) / 2) / (npos * nneg))
    return float(np.median(out))


def oracles(a, b, c, e, m, ht, hh, n_items) -> tuple[float, float]:
    A_tr = dic.activation_csr(a, b, m)
    A_tr.data[:] = 1.0
    P = dic.activation_csr(c, e, m).toarray() > 0
    base = np.asarray(A_tr.sum(0)).ravel() / A_tr.shape[0]
    L_tr, L_h = dic.incidence(ht[:, :1], n_items), dic.incidence(hh[:, :1], n_items)
    n_i = np.asarray(L_tr.sum(0)).ravel()
    rate = (np.asarray((A_tr.T @ L_tr).todense()) + base[:, None]) / (n_i[None, :] + 1.0)
    X_tr, X_h = dic.incidence(ht, n_items), dic.incidence(hh, n_items)
    df = np.asarray(X_tr.sum(0)).ravel()
    lift = np.log((np.asarray((A_tr.T @ X_tr).todense()) + 1.0) / (df[None, :] * base[:, None] + 1.0))
    return median_auc(np.asarray(L_h @ rate.T), P), median_auc(np.asarray(X_h @ lift.T), P)


def main() -> None:
    torch.set_num_threads(2)
    cfg = config.load("ml-1m")
    ctx = stages.stage_inputs(cfg)
    sae = stages.fit_stage(cfg, ctx, cfg.sae_latents, cfg.sae_k, cfg.sae_variant, progress=False).sae
    ht = ctx.inst["train"].hist
    hh = np.concatenate([ctx.inst[s].hist for s in ("dev", "test")])
    acts = stages.activation_arrays(cfg, ctx, sae)
    models = {f"SAE {sae.cfg.n_latents} x k{sae.cfg.k}" if i == "sae" else md.name: md.arrays
              for i, md in concepts.model_codes(cfg, ctx, {"main": sae}, acts).items()}
    n_items = int(max(ht.max(), hh.max(), ctx.ds.items["item_id"].max())) + 1

    print("## Oracles: median held-out ROC-AUC\n\n| model | last-item oracle | bag-of-items oracle |\n|---|---:|---:|")
    for name, (a, b, c, e, m) in models.items():
        last, bag = oracles(a, b, c, e, m, ht, hh, n_items)
        print(f"| {name} | {last:.3f} | {bag:.3f} |", flush=True)

    print("\n## Whole-history detection: median balanced accuracy (share >= 0.8)\n")
    print("| item pool | exemplars | " + " | ".join(models) + " | seconds |\n|---|---:|" + "---:|" * (len(models) + 1))
    default_items = crd.LABEL_MAX_ITEMS
    for pool, n_ex in POOLS:
        crd.LABEL_MAX_ITEMS = n_ex          # the offline labeler's constant, varied here only
        t0 = time.time()
        cells = []
        for a, b, c, e, m in models.values():
            d, _, sc = dtc.dictionary_and_scores(a, b, ht, c, e, hh, ctx.ds.items, m, cfg.top_n, cfg.seed, pool)
            r = dtc.score_summary(sc, d.stats.n_fire > 0)
            cells.append(f"{r['median_bal_acc_random']:.3f} ({r['share_bal_acc_ge_0.8_random']:.1%})")
        print(f"| {'all' if pool == 0 else f'top {pool}'} | {n_ex} | " + " | ".join(cells)
              + f" | {time.time() - t0:.0f} |", flush=True)
    crd.LABEL_MAX_ITEMS = default_items


if __name__ == "__main__":
    main()
