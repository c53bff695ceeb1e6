"""SAE training variants on one budget (issue 22): every variant of the SAE fit (`sae_loss`, `sae_euclid`,
`sae_input`, `sae_dense`; recsae_utils/sae/variants.py) fitted on a finished run folder's cached h_u, then
measured with the stage functions themselves: the concept yardstick (yardstick.concept_directions and
steering_table: concept gain at matched KL 0.1 and 0.3 for sae_in / sae_out / sae_multi3, DiffMean, raw
dimensions and random directions), k-sparse probing AUROC at k = 1 and 4 (SAE and raw h_u), the
input-output overlap of specific latents (yardstick.io_overlap, top 20), per-latent steerability at matched
KL (steering.measure, --steer), EV in h_u space and in score space, NDCG@10 retention on dev and test
(fidelity.retention, paired-bootstrap intervals), dead and generic shares, and seed stability for --stable
variants (stability.match_decoders: share of latents matched at decoder cosine >= 0.9 over seeds 1 and 2).

The run folder is read only; fits and per-variant results go under --out (rerunning skips what is there);
the table goes to reports/variants/<dataset>/ (README.md, summary.json, variants.png).

    RECSAE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python \\
        benchmarks/bench_sae_variants.py ml-1m --run-dir runs/ml-1m --out /tmp/variants --steer

Every fit: the run's SAE settings ("openai" TopK, 2,048 latents, k = 32 unless the variant says otherwise),
--samples training vectors (whole epochs over all training h_u, lr decay over the last half), the epoch with
the lowest training loss kept (no dev selection, so dev and test stay untouched). `dense` = "auto" takes the
background size from the data: the smallest n whose top-n principal directions of h_u hold 90% of the
variance that the run's default SAE's generic latents write into h_u (sae.variants.dense_span).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_steering import load_run  # noqa: E402  (the run folder, read-only)

from recsae_utils import artifacts, config, fidelity, stability, stages  # noqa: E402
from recsae_utils import dictionary as DI  # noqa: E402
from recsae_utils import interventions as I  # noqa: E402
from recsae_utils import sae as S  # noqa: E402
from recsae_utils.sae import variants as V  # noqa: E402
from recsae_utils import steering as ST  # noqa: E402
from recsae_utils import yardstick as Y  # noqa: E402
from recsae_utils.concepts import generic_slot_share  # noqa: E402
from recsae_utils.train import rank_targets  # noqa: E402

# name -> SAEConfig fields that differ from the run's ("dense": "auto" = dense_span)
VARIANTS = {
    "mse": {},
    "score": {"loss": "score"},
    "score+eucl": {"loss": "score", "euclid": 1.0},
    "kl": {"loss": "kl", "euclid": 0.1},
    "whitened": {"input": "whitened"},
    "dense": {"dense": "auto"},
    "whitened+dense": {"input": "whitened", "dense": "auto"},
    "score+dense": {"loss": "score", "dense": "auto"},
    "mse 1024xk8": {"n_latents": 1024, "k": 8},   # the sizes of the original RecSAE code
    "kl 1024xk8": {"loss": "kl", "euclid": 0.1, "n_latents": 1024, "k": 8},
    "kl k8": {"loss": "kl", "euclid": 0.1, "k": 8},
    "kl k16": {"loss": "kl", "euclid": 0.1, "k": 16},
    # the two variants that moved a target, at 4x the budget (is the retention they lose a budget effect?)
    "whitened 4M": {"input": "whitened", "samples": 4_000_000},
    "kl 4M": {"loss": "kl", "euclid": 0.1, "samples": 4_000_000},
}
KLS = (0.1, 0.3)
BASELINES = ("diffmean", "raw", "random")
SAE_METHODS = ("sae_in", "sae_out", "sae_multi3")


class Bench:
    """Everything that does not depend on the SAE, computed once (the same seeded rows as stage 07)."""

    def __init__(self, cfg, run: dict, seed: int = 0, dict_rows: int = 200_000):
        self.cfg, self.run, self.seed, self.E = cfg, run, seed, run["E"]
        ds, inst, E = run["ds"], run["inst"], run["E"]
        self.cs = Y.concept_set(DI.item_features(ds.items, len(E)), len(E), cfg.concept_min_items)
        tr, te = inst["train"], inst["test"]
        rng = np.random.default_rng(seed)
        self.fit_rows = np.sort(rng.choice(len(tr), min(50_000, len(tr)), replace=False))
        test_rows = np.sort(rng.choice(len(te), min(500, len(te)), replace=False))
        self.pos, self.pos_test = Y.positives(self.cs, tr.item), Y.positives(self.cs, te.item)
        self.rows = Y.steering_rows(E, run["h"]["test"][test_rows], te.user[test_rows], te.item[test_rows], run["mask"])
        self.ranks = {s: rank_targets(E, run["h"][s], inst[s], run["mask"]) for s in ("dev", "test")}
        n = len(tr)
        self.dict_rows = np.arange(n) if not dict_rows or dict_rows >= n else \
            np.sort(np.random.default_rng(seed + 1).choice(n, dict_rows, replace=False))
        self.null = None

    def baselines(self) -> dict:
        """Concept gains of DiffMean, raw dimensions, random directions (the best of as many as the run's
        SAE has latents, as stage 07); raw dimensions' k-sparse AUROC."""
        h = self.run["h"]
        units = Y.Units(self.run["sae"].W_dec.detach().float(), None)
        dirs, _ = Y.concept_directions(self.E, h["train"], self.pos, self.cs.items, units, units, self.fit_rows,
                                       self.seed, BASELINES)
        out = self._gains(dirs)
        p = Y.ksparse_probing(h["train"].double().numpy(), self.pos, h["test"].double().numpy(), self.pos_test,
                              self.fit_rows, ks=(1, 4), names=self.cs.names)
        out.update({f"auroc_k{k}": float(p[p.k == k].auroc.median()) for k in (1, 4)})
        return out

    def _gains(self, dirs) -> dict:
        st = Y.steering_table(self.E, self.rows, dirs, self.cs, "target", targets=KLS)
        return {f"{m}@{kl:g}": float(st[(st.method == m) & (st.kl_target == kl)].gain.median()) for m in dirs for kl in KLS}

    def measure(self, sae, steer: bool = False) -> dict:
        run, E, m = self.run, self.E, sae.cfg.n_latents
        h, inst = run["h"], run["inst"]
        out, secs = {}, {}
        t = time.time()
        codes = {s: S.encode_sparse(sae, h[s]) for s in ("train", "test")}
        D = sae.W_dec.detach().float()
        for s in ("dev", "test"):
            xh = S.reconstruct(sae, h[s])
            sh, sx = h[s] @ E[1:].T, xh @ E[1:].T
            out[f"ev_h_{s}"] = float(1 - ((h[s] - xh) ** 2).sum() / ((h[s] - h[s].mean(0)) ** 2).sum())
            out[f"ev_score_{s}"] = float(1 - ((sh - sx) ** 2).sum() / ((sh - sh.mean(0)) ** 2).sum())
            ret = fidelity.retention(self.ranks[s], rank_targets(E, xh, inst[s], run["mask"]))
            out[f"retention_{s}"] = ret["retention"]
            out[f"retention_{s}_ci"] = [ret["retention_ci_low"], ret["retention_ci_high"]]
        secs["fidelity"] = time.time() - t
        t = time.time()
        Z = Y.firing_matrix(*codes["train"], m)
        U = Y.Units(D, Z)
        dirs, _ = Y.concept_directions(E, h["train"], self.pos, self.cs.items, U, U, self.fit_rows, self.seed,
                                       SAE_METHODS)
        out.update(self._gains(dirs))
        secs["steering"] = time.time() - t
        t = time.time()
        p = Y.ksparse_probing(Z, self.pos, Y.firing_matrix(*codes["test"], m), self.pos_test, self.fit_rows,
                              ks=(1, 4), names=self.cs.names)
        out.update({f"auroc_k{k}": float(p[p.k == k].auroc.median()) for k in (1, 4)})
        secs["probing"] = time.time() - t
        t = time.time()
        r = self.dict_rows
        tr_idx, tr_val = codes["train"][0][r], codes["train"][1][r]
        dic = DI.build_dictionaries(tr_idx, tr_val, inst["train"].hist[r], run["ds"].items, m, top_n=self.cfg.top_n,
                                    item_pool=self.cfg.item_pool)
        ul = ST.unit_labels(dic)
        spec = np.flatnonzero((ul.freq > 0) & ~np.asarray(dic.generic, bool))
        ov = Y.io_overlap(ul.top_count, D, E, spec)
        out.update(io_overlap=float(np.median(ov)) if len(ov) else None, dead_share=float((ul.freq <= 0).mean()),
                   generic_latents=int(np.asarray(dic.generic, bool).sum()), generic_slot_share=generic_slot_share(dic),
                   specific_latents=int(len(spec)))
        secs["dictionary"] = time.time() - t
        if steer:
            t = time.time()
            te = inst["test"]
            sctx = I.steering_context(E, sae, h["test"], te.user, te.item, run["mask"], run["ds"].items)
            if self.null is None:
                rows = np.sort(np.random.default_rng(self.seed).choice(len(sctx.h), min(ST.N_ROWS, len(sctx.h)),
                                                                       replace=False))
                grid = {b: I.random_tops(sctx, rows, n_random=ST.N_RANDOM, beta=b, seed=self.seed + 1) for b in I.BETAS}
                self.null = (rows, grid, I.random_kls(sctx, rows, ST.N_RANDOM, I.BETAS, seed=self.seed + 1),
                             ST.item_span(sctx.E))
            rows, grid, kls, span = self.null
            d = ST.Directions(D, tr_idx, tr_val, *codes["test"])
            res = ST.measure(sctx, rows, d, dic, ST.N_UNITS, ST.N_RANDOM, self.seed, grid[1.0], span, grid, kls)
            out["steerable_share"] = float(res.steer["steerable"].mean()) if len(res.steer) else None
            out["steerable_share_kl"] = float(res.steer["steerable_kl"].mean()) if len(res.steer) else None
            secs["steerability"] = time.time() - t
        out["seconds"] = {k: round(v, 1) for k, v in secs.items()}
        return out


def fidelity_kept(r: dict) -> bool:
    """The issue's fidelity bar: NDCG@10 retention >= 0.99 on dev and 1.0 inside the test interval."""
    lo, hi = r.get("retention_test_ci") or (0.0, 0.0)
    return r["retention_dev"] >= 0.99 and lo <= 1.0 <= hi


def generic_mask(sae, h: torch.Tensor, rows: int = 100_000) -> torch.Tensor:
    """(m,) bool: latents firing on more than dictionary.GENERIC_FREQ of the first `rows` training h_u."""
    x = h[:rows]
    idx, val = S.encode_sparse(sae, x)
    freq = np.bincount(idx[val > 0].ravel(), minlength=sae.cfg.n_latents) / len(x)
    return torch.from_numpy(freq > DI.GENERIC_FREQ)


def fit_variant(cfg, run: dict, spec: dict, seed: int, samples: int, out: Path):
    """One fit through the run's own path (stages.sae_config, sae.fit_sae), resumable under `out`."""
    h = run["h"]["train"]
    base = stages.sae_config(cfg, h.shape[1], len(h), spec.get("n_latents", cfg.sae_latents),
                             spec.get("k", cfg.sae_k), "openai")
    fields = {k: v for k, v in spec.items() if k not in ("n_latents", "k", "samples")}
    samples = spec.get("samples", samples)
    scfg = dataclasses.replace(base, epochs=max(1, math.ceil(samples / len(h))), seed=seed, **fields)
    return S.fit_sae(h, scfg, out_dir=out, progress=False, item_emb=run["E"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--run-dir", type=Path, default=None, help="finished run folder (default runs/<dataset>)")
    ap.add_argument("--out", type=Path, default=None, help="fits and per-variant results (default <run-dir>/../variants_<dataset>)")
    ap.add_argument("--report-dir", type=Path, default=None, help="default reports/variants/<dataset>")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--stable", default="", help="variants also fitted with seeds 1 and 2 (seed stability)")
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--dict-rows", type=int, default=200_000)
    ap.add_argument("--steer", action="store_true", help="per-latent steerability at matched KL (slow)")
    ap.add_argument("--setup", default="", help="how the run folder was made (a sentence for the report)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = config.load(a.dataset, "")
    root = Path(__file__).resolve().parents[1]
    run_dir = a.run_dir or root / "runs" / a.dataset
    out = a.out or run_dir.parent / f"variants_{a.dataset}"
    rep = a.report_dir or root / "reports" / "variants" / a.dataset
    run = load_run(run_dir, cfg)
    run["h"]["dev"] = torch.from_numpy(np.load(run_dir / "hu" / "dev.npy"))
    bench = Bench(cfg, run, cfg.seed, a.dict_rows)
    names = [v for v in a.variants.split(",") if v]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}: choose from {list(VARIANTS)}")
    dense_n = None
    results = {}
    f = out / "reference.json"
    if not f.exists() or (a.steer and "steerable_share_kl" not in artifacts.read_json(f)):
        artifacts.write_json(f, bench.measure(run["sae"], a.steer))
    results["reference"] = artifacts.read_json(f)
    f = out / "baselines.json"
    if not f.exists():
        artifacts.write_json(f, bench.baselines())
    results["reference"]["baselines"] = artifacts.read_json(f)
    for name in names:
        spec = dict(VARIANTS[name])
        if spec.get("dense") == "auto":
            if dense_n is None:
                dense_n = V.dense_span(run["sae"], run["h"]["train"], generic_mask(run["sae"], run["h"]["train"]))
                print(f"dense = auto: {dense_n} principal directions", flush=True)
            spec["dense"] = dense_n
        d = out / name.replace(" ", "_").replace("+", "_")
        f = d / "result.json"
        if not f.exists():
            fit = fit_variant(cfg, run, spec, cfg.seed, a.samples, d / "seed0")
            res = bench.measure(fit.sae, a.steer)
            res.update(spec=spec, fit_seconds=fit.seconds, samples=spec.get("samples", a.samples))
            artifacts.write_json(f, res)
        elif a.steer and "steerable_share_kl" not in artifacts.read_json(f):  # measured before --steer was asked
            res = artifacts.read_json(f)
            res.update(bench.measure(S.load_sae(d / "seed0" / "sae.safetensors"), True))
            artifacts.write_json(f, res)
        results[name] = artifacts.read_json(f)
        if name in a.stable.split(",") and "stability_0.9" not in results[name]:
            W0 = S.load_sae(d / "seed0" / "sae.safetensors").W_dec.detach().numpy()
            shares = []
            for s in (1, 2):
                fs = fit_variant(cfg, run, spec, s, a.samples, d / f"seed{s}")
                shares.append(stability.match_decoders(W0, fs.sae.W_dec.detach().numpy()).shares())
            results[name].update({f"stability_{t}": float(np.mean([x[f"matched_{t}"] for x in shares]))
                                  for t in ("0.9", "0.7")})
            artifacts.write_json(f, results[name])
        print(name, json.dumps({k: v for k, v in results[name].items() if not isinstance(v, (dict, list))}), flush=True)
    write_report(rep, a, results, dense_n)


def write_report(rep: Path, a, results: dict, dense_n) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = results["reference"]["baselines"]
    dm = base["diffmean@0.3"]
    cols = [("gain sae_out @KL0.3", "sae_out@0.3"), ("gain sae_multi3 @KL0.3", "sae_multi3@0.3"),
            ("gain sae_in @KL0.3", "sae_in@0.3"), ("gain sae_multi3 @KL0.1", "sae_multi3@0.1"),
            ("AUROC k=1", "auroc_k1"), ("AUROC k=4", "auroc_k4"), ("in-out overlap", "io_overlap"),
            ("steerable (matched KL)", "steerable_share_kl"), ("EV h", "ev_h_test"), ("EV score", "ev_score_test"),
            ("retention dev", "retention_dev"), ("retention test", "retention_test"), ("dead", "dead_share"),
            ("generic slots", "generic_slot_share"), ("stable @0.9", "stability_0.9")]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    lines = ["| variant | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, r in results.items():
        label = "default SAE of the run (reference)" if name == "reference" else name
        lines.append(f"| {label} | " + " | ".join(fmt(r.get(k)) for _, k in cols) + " |")
    lines.append("| DiffMean | " + " | ".join(fmt(base.get(k.replace("sae_out", "diffmean")))
                                             if k == "sae_out@0.3" else "-" for _, k in cols) + " |")
    lines.append("| raw h_u dimension | " + " | ".join(fmt(base.get({"sae_out@0.3": "raw@0.3", "auroc_k1": "auroc_k1",
                                                                     "auroc_k4": "auroc_k4"}.get(k, "")))
                                                     for _, k in cols) + " |")
    lines.append("| random direction | " + " | ".join(fmt(base.get("random@0.3")) if k == "sae_out@0.3" else "-"
                                                    for _, k in cols) + " |")
    ratio = {n: {m: (r.get(f"{m}@0.3") or 0) / dm for m in SAE_METHODS} for n, r in results.items()}
    rep.mkdir(parents=True, exist_ok=True)
    cmd = shlex.join(["benchmarks/bench_sae_variants.py", *sys.argv[1:]])
    text = [f"# SAE training variants ({a.dataset})", "",
            f"Command: `{cmd}` (OMP_NUM_THREADS=1). Every variant: {a.samples:,} training vectors unless its name says otherwise (e.g. 4M), seed 0, the run's "
            f"SAE settings otherwise; measured on the run's test split (fidelity also on dev) by the stage functions "
            f"(see the script's docstring). `dense` = {dense_n} principal directions (auto: 90% of the default SAE's "
            f"generic-latent contribution). The reference row is the run's default SAE (its full budget, dev-selected).",
            *([f"Run folder: {a.setup}"] if getattr(a, "setup", "") else []),
            "", "\n".join(lines), "",
            f"Concept gain at KL 0.3 as a multiple of DiffMean's ({dm:.3f}): " + "; ".join(
                f"{n}: out {v['sae_out']:.2f}x, top-3 {v['sae_multi3']:.2f}x, in {v['sae_in']:.2f}x"
                for n, v in ratio.items()), ""]
    artifacts.write_json(rep / "summary.json", {"command": cmd, "samples": a.samples, "dense_auto": dense_n,
                                                "variants": results, "ratio_to_diffmean_at_kl0.3": ratio})
    kept = [n for n, r in results.items() if fidelity_kept(r)]
    best = lambda k: max(kept, key=lambda n: results[n].get(k) or 0) if kept else None
    text += ["Fidelity kept (NDCG@10 retention >= 0.99 on dev and 1.0 inside the test interval): "
             + (", ".join(kept) or "none") + ". Among them the best on each target: "
             + "; ".join(f"{lab} {best(k)} ({fmt(results[best(k)].get(k))})" for lab, k in (
                 ("output side (top-3)", "sae_multi3@0.3"), ("input side", "sae_in@0.3"),
                 ("steerable share", "steerable_share_kl"), ("AUROC k=1", "auroc_k1"))) if kept else "",
             "Failing fidelity: " + ", ".join(f"{n} (dev {results[n]['retention_dev']:.3f}, test "
                                               f"{results[n]['retention_test']:.3f})" for n in results if n not in kept), ""]
    artifacts.write_text(rep / "README.md", "\n".join(text))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    names = list(results)
    x = np.arange(len(names))
    for i, m in enumerate(SAE_METHODS):
        axes[0].bar(x + (i - 1) * 0.27, [ratio[n][m] for n in names], 0.27, label=m)
    axes[0].axhline(1.0, color="0.3", ls=":", lw=1)
    axes[0].axhline(base["raw@0.3"] / dm, color="C3", ls="--", lw=1, label="raw dims")
    axes[0].set(ylabel="concept gain / DiffMean (KL 0.3)", xticks=x)
    axes[0].set_xticklabels(names, rotation=40, ha="right", fontsize=7)
    axes[0].legend(frameon=False, fontsize=7)
    # the trade-off: what a reader gains (steerable latents, the input side) against what the model loses
    for ax, key, lab in ((axes[1], "steerable_share_kl", "steerable latents (matched KL, share)"),
                         (axes[2], None, "input side: sae_in gain / DiffMean (KL 0.3)")):
        ys = [(results[n].get(key) if key else ratio[n]["sae_in"]) for n in names]
        xs = [results[n]["ev_h_test"] for n in names]
        ax.scatter(xs, [y or 0 for y in ys], c=["C2" if n in kept else "C3" for n in names], s=18)
        for n, x_, y_ in zip(names, xs, ys):
            ax.annotate(n, (x_, y_ or 0), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set(xlabel="EV of h_u (test); green: NDCG@10 retention kept", ylabel=lab)
    fig.tight_layout()
    fig.savefig(rep / "variants.png", dpi=150)


if __name__ == "__main__":
    main()
