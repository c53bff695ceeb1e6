"""Stage 07 (notebooks/07_yardstick.ipynb): how the concepts compare. Runs the yardstick (`yardstick`) and
the explanation deletion test (`faithfulness`) on the default SAE, its baselines and the supervised
directions, and builds the `yardstick` section of summary.json, its table and its per-concept CSV.

Sizes: steering and the deletion test use a seeded sample of `N_ROWS` test instances; probes are fitted on a
seeded sample of `PROBE_ROWS` training instances (the units they use are picked on all training instances)
and scored on every test instance.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import dictionary as DI
from . import faithfulness as FA
from . import progress
from . import yardstick as Y
from .specificity import Specificity
from .steering import model_directions, unit_labels

N_ROWS = 500
PROBE_ROWS = 50_000
TABLE_KL = (0.1, 0.3)
LABELS = {"diffmean": "DiffMean", "probe": "linear probe", "sae_in": "SAE latent, input side (by label)",
          "sae_out": "SAE latent, output side", "sae_multi3": "SAE top-3 latents (output side, code space)",
          "sae_multi5": "SAE top-5 latents (output side, code space)", "raw": "raw h_u dimension",
          "random": "random direction (best of as many as SAE latents)", "random_sae_in": "random SAE, input side",
          "random_sae_out": "random SAE, output side", "item_dir": "item-table direction (reference)",
          "pca": "PCA components of h_u", "full_probe": "probe on all of h_u (ceiling)"}
PROBE_MODELS = {"sae": "sae_out", "random": "random_sae_out", "raw": "raw", "pca": "pca"}  # model -> table row


@dataclass
class StageResult:
    concepts: list[str]
    steer: pd.DataFrame            # yardstick.steering_table, both variants
    probing: pd.DataFrame          # model, concept, k, units, auroc
    agreement: dict                # model -> {io_overlap, label_agree, ...}
    faithful: pd.DataFrame         # faithfulness.deletion_test rows
    faithful_summary: dict
    picked: dict                   # method -> (C,) unit per concept
    seconds: dict = field(default_factory=dict)
    io_per_latent: pd.DataFrame | None = None   # the SAE's specific latents: io overlap, label agreement


def run_stage(cfg, ctx, sae, acts: dict, n_rows: int = N_ROWS, probe_rows: int = PROBE_ROWS,
              seed: int | None = None) -> StageResult:
    """Everything the report section "How the concepts compare" shows, on the default SAE `sae`."""
    seed = cfg.seed if seed is None else seed
    secs, t0 = {}, time.time()
    E = ctx.model.item_table().detach().float()
    n_items = len(E)
    feats = DI.item_features(ctx.ds.items, n_items)
    cs = Y.concept_set(feats, n_items, cfg.concept_min_items)
    if not cs.names:
        raise ValueError(f"{cfg.dataset}: no metadata value is held by {cfg.concept_min_items} items or more and by at "
                         f"most {Y.MAX_SHARE:.0%} of the catalogue (concept_min_items); nothing to compare")
    tr, te = ctx.inst["train"], ctx.inst["test"]
    models = model_directions(cfg, ctx, sae, acts)        # 'sae', 'raw', 'random': directions and codes
    Z = {k: Y.firing_matrix(models[k].idx_train, models[k].val_train, len(models[k].D)) for k in ("sae", "random")}
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(len(tr), min(probe_rows, len(tr)), replace=False))
    test_rows = np.sort(rng.choice(len(te), min(n_rows, len(te)), replace=False))
    pos = {"target": Y.positives(cs, tr.item), "history": Y.positives(cs, tr.item, tr.hist)}
    secs["setup"] = time.time() - t0

    # 1. directions and steering at matched KL
    t1 = time.time()
    rows = Y.steering_rows(E, ctx.h["test"][test_rows], te.user[test_rows], te.item[test_rows], ctx.mask)
    frames, picked = [], {}
    for variant, methods in (("target", Y.METHODS), ("history", Y.HISTORY_METHODS)):
        dirs, pk = Y.concept_directions(E, ctx.h["train"], pos[variant], cs.items, Y.Units(models["sae"].D, Z["sae"]),
                                        Y.Units(models["random"].D, Z["random"]), fit_rows, seed, methods)
        picked.update({k if variant == "target" else f"{k}_history": v for k, v in pk.items()})
        frames.append(Y.steering_table(E, rows, dirs, cs, variant))
        progress.step(f"yardstick: steering, {variant} variant: {len(dirs)} methods x {len(cs.names)} concepts")
    steer = pd.concat(frames, ignore_index=True)
    secs["steering"] = time.time() - t1

    # 2. k-sparse probing on held-out test instances
    t1 = time.time()
    pos_test = Y.positives(cs, te.item)
    h_tr, h_te = ctx.h["train"].double(), ctx.h["test"].double()
    V = Y.pca_basis(h_tr)
    mu = h_tr.mean(0)
    X = {"sae": (Z["sae"], Y.firing_matrix(models["sae"].idx_test, models["sae"].val_test, len(models["sae"].D))),
         "random": (Z["random"], Y.firing_matrix(models["random"].idx_test, models["random"].val_test,
                                                 len(models["random"].D))),
         "raw": (h_tr.numpy(), h_te.numpy()), "pca": (((h_tr - mu) @ V.T).numpy(), ((h_te - mu) @ V.T).numpy())}
    probing = [Y.ksparse_probing(a, pos["target"], b, pos_test, fit_rows, names=cs.names).assign(model=k)
               for k, (a, b) in X.items()]
    probing.append(Y.full_probe_auroc(h_tr.numpy(), pos["target"], h_te.numpy(), pos_test, fit_rows,
                                      cs.names).assign(model="full_probe"))
    probing = pd.concat(probing, ignore_index=True)
    probing["n_pos_test"] = probing["concept"].map(dict(zip(cs.names, pos_test.sum(0).tolist())))
    secs["probing"] = time.time() - t1
    progress.step(f"yardstick: k-sparse probing, {len(X)} models x {len(cs.names)} concepts")

    # 3. input-output agreement, from each model's dictionary (stage 05's tables)
    t1 = time.time()
    agreement, uls = {}, {}
    io_sae = None
    for k in ("sae", "random", "raw"):
        d = models[k]
        dic = DI.build_dictionaries(d.idx_train, d.val_train, tr.hist, ctx.ds.items, len(d.D), top_n=cfg.top_n,
                                    item_pool=cfg.item_pool)
        uls[k] = ul = unit_labels(dic)
        spec_units = np.flatnonzero((ul.freq > 0) & ~np.asarray(dic.generic, bool))
        ov = Y.io_overlap(ul.top_count, d.D, E, spec_units)
        shuffled = Y.io_overlap([ul.top_count[j] for j in np.random.default_rng(seed).permutation(len(d.D))],
                                d.D, E, spec_units)
        lab = Y.label_agreement(ul.labels, d.D, E, feats, spec_units)
        agreement[k] = {"specific_units": int(len(spec_units)),
                        "io_overlap_median": float(np.median(ov)) if len(ov) else None,
                        "io_overlap_mean": float(np.mean(ov)) if len(ov) else None,
                        "io_overlap_shuffled_mean": float(np.mean(shuffled)) if len(shuffled) else None,
                        "share_overlap_ge_0.3": float(np.mean(ov >= 0.3)) if len(ov) else None,
                        "labelled_units": int(len(lab)), "label_agrees_share": float(lab.mean()) if len(lab) else None}
        if k == "sae":
            io_sae = pd.DataFrame({"latent": spec_units, "io_overlap": ov})
            labelled = np.array([len(ul.labels[u]) > 0 for u in spec_units], bool)
            io_sae["label_agrees"] = pd.array([pd.NA] * len(spec_units), dtype="boolean")
            io_sae.loc[labelled, "label_agrees"] = lab
            sae_dic = dic
    secs["agreement"] = time.time() - t1
    progress.step(f"yardstick: input-output agreement, SAE median overlap {agreement['sae']['io_overlap_median']}")

    # 4. explanation faithfulness on the same test rows
    t1 = time.time()
    genre_cols = np.flatnonzero(np.asarray(feats.kind) == "genre")
    label_genres = [np.intersect1d(lab, genre_cols) for lab in uls["sae"].labels]
    col_of = {c: i for i, c in enumerate(genre_cols)}
    label_genres = [np.array([col_of[c] for c in lab], dtype=np.int64) for lab in label_genres]
    item_genres = np.asarray(feats.M[:, genre_cols].toarray() > 0)[:n_items]
    zi, zv = models["sae"].idx_test[test_rows], models["sae"].val_test[test_rows]
    faithful, fsum = FA.deletion_test(E, sae.W_dec.detach(), sae.b_dec.detach().double().numpy(),
                                      ctx.h["test"][test_rows], zi, zv, te.user[test_rows], ctx.mask,
                                      Specificity.of(sae_dic), label_genres, item_genres, seed)
    secs["faithfulness"] = time.time() - t1
    secs["total"] = time.time() - t0
    progress.step(f"yardstick: deletion test on {len(faithful)} explanations ({secs['total']:.0f}s in all)")
    return StageResult(cs.names, steer, probing, agreement, faithful, fsum, picked, secs, io_sae)


# ---------------------------------------------------------------------------------------------------
# Tables and summary


def method_table(res: StageResult, kls=TABLE_KL) -> pd.DataFrame:
    """Methods x (median concept gain at each KL, NDCG@10 kept at KL 0.3, k=1 and k=4 median AUROC,
    input-output agreement), target variant; medians over concepts."""
    st = res.steer[res.steer["variant"] == "target"]
    rows = []
    for m in Y.METHODS:
        s = st[st["method"] == m]
        row = {"method": m, "name": LABELS[m]}
        for kl in kls:
            row[f"gain@KL{kl:g}"] = float(s.loc[s["kl_target"] == kl, "gain"].median())
        at = s[s["kl_target"] == 0.3]
        row["ndcg_kept@KL0.3"] = float((at["ndcg_after"] / at["ndcg_before"]).median())
        model = {"sae_out": "sae", "random_sae_out": "random", "raw": "raw"}.get(m)
        for k in (1, 4):
            p = res.probing[(res.probing["model"] == model) & (res.probing["k"] == k)] if model else None
            row[f"auroc_k{k}"] = float(p["auroc"].median()) if model else None
        ag = {"sae_out": "sae", "sae_in": "sae", "random_sae_out": "random", "random_sae_in": "random",
              "raw": "raw"}.get(m)
        row["io_overlap"] = res.agreement[ag]["io_overlap_median"] if ag else None
        rows.append(row)
    p = res.probing
    for model in ("pca", "full_probe"):
        row = {"method": model, "name": LABELS[model]}
        for k in (1, 4):
            q = p[(p["model"] == model) & ((p["k"] == k) | (model == "full_probe"))]
            row[f"auroc_k{k}"] = float(q["auroc"].median())
        rows.append(row)
    return pd.DataFrame(rows)


def per_concept(res: StageResult) -> pd.DataFrame:
    """The CSV: one row per (variant, method, concept, target KL) with its numbers, and the unit picked."""
    st = res.steer.copy()
    idx = {c: i for i, c in enumerate(res.concepts)}
    key = st["method"] + np.where(st["variant"] == "history", "_history", "")
    st["unit"] = [int(res.picked[k][idx[c]]) if k in res.picked else -1 for k, c in zip(key, st["concept"])]
    return st


def concept_latents(res: StageResult, kl: float = 0.3) -> pd.DataFrame:
    """Per concept, the latent a reader finds by what activates it (`sae_in`, the detecting latent) beside the
    one that moves its items into the top 10 (`sae_out`, the steering latent), and each one's gain at matched
    KL `kl`; `steer_top3_gain` is the code-space edit `recommend(steer=<concept>)` makes. The two differ for
    most concepts: the card names both so that nobody steers with the detecting one."""
    st = per_concept(res)
    st = st[(st["variant"] == "target") & np.isclose(st["kl_target"], kl)]
    wide = st.pivot(index="concept", columns="method", values=["unit", "gain"])
    out = pd.DataFrame({"concept": wide.index,
                        "detecting_latent": wide[("unit", "sae_in")].astype(int).to_numpy(),
                        "detecting_gain": wide[("gain", "sae_in")].to_numpy(),
                        "steering_latent": wide[("unit", "sae_out")].astype(int).to_numpy(),
                        "steering_gain": wide[("gain", "sae_out")].to_numpy(),
                        "steer_top3_gain": wide[("gain", "sae_multi3")].to_numpy(),
                        "diffmean_gain": wide[("gain", "diffmean")].to_numpy()})
    out["same_latent"] = out["detecting_latent"] == out["steering_latent"]
    return out.set_index("concept").loc[[c for c in res.concepts if c in set(out["concept"])]].reset_index()


def _f(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)


def summary(res: StageResult) -> dict:
    """The summary.json section `yardstick`."""
    tab = method_table(res)
    st = res.steer
    med = st.groupby(["variant", "method", "kl_target"])["gain"].median()
    gains = {v: {m: {f"{kl:g}": _f(med.get((v, m, kl))) for kl in Y.KL_TARGETS}
                 for m in st.loc[st["variant"] == v, "method"].unique()} for v in ("target", "history")}
    ndcg = st[st["variant"] == "target"].groupby(["method", "kl_target"]).apply(
        lambda s: (s["ndcg_after"] / s["ndcg_before"]).median(), include_groups=False)
    probing = {m: {str(k): _f(g["auroc"].median()) for k, g in d.groupby("k")}
               for m, d in res.probing.groupby("model")}
    dm = lambda kl: gains["target"]["diffmean"][f"{kl:g}"]
    best_sae = lambda kl: max(gains["target"][m][f"{kl:g}"] or -np.inf for m in ("sae_out", "sae_multi3", "sae_multi5"))
    return {"concepts": res.concepts, "n_concepts": len(res.concepts), "kl_targets": list(Y.KL_TARGETS),
            "rows": int(res.faithful.shape[0]), "median_gain": gains,
            "ndcg_kept": {m: {f"{kl:g}": _f(ndcg.get((m, kl))) for kl in Y.KL_TARGETS} for m in Y.METHODS},
            "probing_auroc": probing, "agreement": res.agreement,
            "faithfulness": {k: _f(v) if not isinstance(v, int) else v for k, v in res.faithful_summary.items()},
            "ratios_at_kl0.3": {"sae_best_out_vs_diffmean": _f(best_sae(0.3) / dm(0.3)) if dm(0.3) else None,
                                "sae_in_vs_diffmean": _f(gains["target"]["sae_in"]["0.3"] / dm(0.3)) if dm(0.3) else None,
                                "diffmean_vs_random": _f(dm(0.3) / gains["target"]["random"]["0.3"])
                                if gains["target"]["random"]["0.3"] else None,
                                "probe_vs_random": _f(gains["target"]["probe"]["0.3"] / gains["target"]["random"]["0.3"])
                                if gains["target"]["random"]["0.3"] else None},
            "table": [{k: (_f(v) if isinstance(v, float) else v) for k, v in r.items()} for r in tab.to_dict("records")],
            "seconds": {k: round(v, 1) for k, v in res.seconds.items()}}


def save_outputs(cfg, res: StageResult) -> dict:
    """`concepts/yardstick.csv` (every concept, method, variant and KL target), `concepts/latent_io.csv` (the
    SAE's specific latents: input-output overlap, label agreement) and `yardstick.md` under the report folder;
    returns the summary.json section."""
    from . import artifacts
    from .tables import yardstick_table

    rep = cfg.report_dir
    (rep / "concepts").mkdir(parents=True, exist_ok=True)
    cl = concept_latents(res)
    for name, df in (("yardstick", per_concept(res)), ("latent_io", res.io_per_latent), ("concept_latents", cl)):
        if df is not None:
            with artifacts.atomic_path(rep / "concepts" / f"{name}.csv") as tmp:
                df.to_csv(tmp, index=False)
    out = summary(res)
    out["concept_latents"] = {"same_latent_share": _f(cl["same_latent"].mean()) if len(cl) else None,
                              "median_detecting_gain": _f(cl["detecting_gain"].median()) if len(cl) else None,
                              "median_steering_gain": _f(cl["steering_gain"].median()) if len(cl) else None}
    artifacts.write_text(rep / "yardstick.md", "# How the concepts compare\n\n" + YARDSTICK_NOTE + "\n\n"
                         + yardstick_table(out) + "\n\n" + concept_latents_md(cl) + "\n")
    return out


def concept_latents_md(cl: pd.DataFrame) -> str:
    """The per-concept card: its detecting and its steering latent, side by side (`concept_latents`)."""
    from .tables import md

    head = ("## Each concept's detecting and steering latent\n\n"
            "The latent a reader finds by what activates it (detecting) is rarely the one that moves the concept's "
            f"items into the top 10 (steering): the same latent for {int(cl['same_latent'].sum())} of {len(cl)} "
            "concepts. `recommend(steer=\"<concept>\")` raises the concept's top 3 latents by output score. "
            "Gains at catalogue KL 0.3 (the share of the concept's items in the top 10 gained).\n\n"
            "| concept | detecting latent | its gain | steering latent | its gain | top-3 edit | DiffMean |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    rows = [f"| {md(r.concept)} | {r.detecting_latent} | {r.detecting_gain:.3f} | {r.steering_latent} | "
            f"{r.steering_gain:.3f} | {r.steer_top3_gain:.3f} | {r.diffmean_gain:.3f} |" for r in cl.itertuples()]
    return head + "\n".join(rows) + ("\n\nPer concept: `concepts/concept_latents.csv`." if len(cl) else "")


YARDSTICK_NOTE = ("Medians over concepts (each a genre, decade, category or co-purchase community held by at least "
                  "`concept_min_items` items and at most half of the catalogue); steering on a "
                  "seeded sample of test instances at the strength where the mean catalogue KL from the unedited "
                  "ranking equals the target; gains in the concept's share of the masked top 10; NDCG@10 kept = "
                  "steered / unedited at KL 0.3; AUROC: k-sparse probes on the method's own units, held out; "
                  "in–out overlap: median share of a specific unit's top-20 items by activation that are also "
                  "among its top-20 by decoder · item embedding. Per concept: `concepts/yardstick.csv`.")
