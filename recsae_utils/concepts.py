"""Stage 05 (notebooks/05_label_concepts.ipynb) as steps: the models whose latents get a dictionary (the SAE,
its other size, and for each the raw h_u dimensions and a random SAE as baselines), their dictionaries and
cards, the SAE's labels, the held-out detection scores, the window sweep, and the saved outputs. The work
itself lives in `dictionary`, `cards`, `labeling`, `detection` and `explain`; this module loops over the
models and keeps the names.

Every model has an id ('sae', 'raw', 'random', 'sae_alt', 'raw_alt', 'random_alt') and a display name
('SAE', 'raw h_u dimensions', ...) used in tables, figures and summary.json; code reads the ids only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts, labeling, poster, progress, stages
from .cards import latent_cards
from .coherence import coherence_summary, genre_coherence
from .detection import (STRONG_Q, WINDOWS, detection_scores, metadata_scores, raw_dimension_codes, raw_dimension_k,
                        score_summary, window_sweep)
from .dictionary import ConceptDictionary, build_dictionaries, dictionary_tables, promoted_items, save_dictionaries
from .explain import judge_probes, label_names, render_explanations


@dataclass
class Model:
    """One set of codes of h_u that gets a dictionary: train codes build it, held-out (dev + test) codes
    score its labels."""

    name: str            # display name (tables, figures, summary.json)
    size: str            # the SAE size it belongs to or is a baseline of, e.g. "2048 latents, k=32"
    idx_train: np.ndarray
    val_train: np.ndarray
    idx_held: np.ndarray
    val_held: np.ndarray
    m: int               # number of latents (units)

    @property
    def arrays(self) -> tuple:
        """(idx_train, val_train, idx_held, val_held, m): the tuple `detection.window_sweep` takes."""
        return self.idx_train, self.val_train, self.idx_held, self.val_held, self.m


def held_histories(ctx) -> np.ndarray:
    """Histories of the held-out instances (dev then test), the rows of every model's held-out codes."""
    return np.concatenate([ctx.inst[s].hist for s in stages.HELD])


def model_codes(cfg, ctx, saes: dict, acts: dict) -> dict[str, Model]:
    """id -> Model for the default SAE ('main' in `saes`, its codes `acts` from stage 03) and, when given,
    the other size ('alt'), each followed by its two baselines: the signed raw dimensions of h_u firing at
    that SAE's rate and a random SAE of its shape. The alt and random codes come from the run folder's
    cache (`stages.sae_codes`; stage 04 wrote the train part)."""
    h_train = ctx.h["train"]
    h_held = np.concatenate([ctx.h[s].numpy() for s in stages.HELD])
    models = {}
    for sfx, key in (("", "main"), ("_alt", "alt")):
        if key not in saes:
            continue
        sae = saes[key]
        m, k = sae.cfg.n_latents, sae.cfg.k
        size = f"{m} latents, k={k}"
        tag = "" if key == "main" else f" ({size})"
        if key == "main":
            codes = (*acts["train"], *(np.concatenate([acts[s][i] for s in stages.HELD]) for i in (0, 1)))
        else:
            c = stages.sae_codes(cfg, ctx, sae, "sae" + sfx)
            codes = (*c["train"], *c["held"])
        models["sae" + sfx] = Model(f"SAE{tag}", size, *codes, m)
        raw_k = "" if key == "main" else f" (k={raw_dimension_k(h_train.shape[1], k, m)})"
        models["raw" + sfx] = Model(f"raw h_u dimensions{raw_k}", size,
                                    *raw_dimension_codes(h_train.numpy(), h_held, k, m))
        c = stages.sae_codes(cfg, ctx, stages.random_baseline(sae, h_train), "random" + sfx)
        models["random" + sfx] = Model(f"random SAE{tag}", size, *c["train"], *c["held"], m)
    return models


def model_table(models: dict[str, Model]) -> pd.DataFrame:
    """The models of the stage, one row each: id, display name, size, units and active units per code."""
    return pd.DataFrame([{"id": i, "name": md.name, "size": md.size, "units": md.m, "k": md.idx_train.shape[1],
                          "train codes": len(md.idx_train), "held-out codes": len(md.idx_held)}
                         for i, md in models.items()]).set_index("id")


# ----------------------------------------------------------------------------------------------------
# Steps


@dataclass
class Built:
    """A model's dictionary (training instances) and its cards (what a labeler reads)."""

    d: ConceptDictionary
    cards: list[dict]


def dictionaries(cfg, ctx, models: dict[str, Model]) -> dict[str, Built]:
    """Every model's dictionary and cards, from training instances only."""
    hist = ctx.inst["train"].hist
    out = {}
    for n, (i, md) in enumerate(models.items(), 1):
        progress.step(f"dictionary {n}/{len(models)}: {md.name}")
        d = build_dictionaries(md.idx_train, md.val_train, hist, ctx.ds.items, md.m, top_n=cfg.top_n,
                               item_pool=cfg.item_pool)
        out[i] = Built(d, latent_cards(d))
    return out


def dictionary_table(models: dict[str, Model], built: dict[str, Built]) -> pd.DataFrame:
    """Per model: live, generic and popularity latents of its dictionary."""
    return pd.DataFrame([{"model": models[i].name, "latents": b.d.m, "live": int((b.d.stats.n_fire > 0).sum()),
                          "generic": int(b.d.generic.sum()), "popularity": int(b.d.popularity_flag.sum())}
                         for i, b in built.items()]).set_index("model")


def _domain(ctx) -> str:
    return "movies" if "title" in ctx.ds.items.columns else "grocery products (category ids only)"


def _llm(cfg) -> labeling.LLMConfig:
    # one cache folder for labels and judge: one token budget (its ledger lives there) across both and reruns
    return labeling.LLMConfig(model=cfg.llm_model, budget_tokens=cfg.llm_budget_tokens, seed=cfg.seed,
                              cache_dir=str(Path(cfg.run_dir) / "labels" / "llm_cache"), time_limit=cfg.llm_time_limit)


def labels(cfg, ctx, sae: Built, sae_model=None, progress: bool = True) -> pd.DataFrame:
    """The SAE's labels: offline (what its top items share, `naming.shared_label`), or from an LLM
    (cfg.labeler; cfg.llm_limit of them, the rest offline), cached in the run folder. With `sae_model` the
    cards first get the output side (`with_output_side`: what each decoder direction promotes)."""
    from .naming import vocabulary_of

    if sae_model is not None:
        sae.cards[:] = with_output_side(sae.cards, sae.d, sae_model.W_dec.detach().numpy(),
                                        ctx.model.item_table().detach().numpy())
    return labeling.label_latents(sae.cards, _llm(cfg), Path(cfg.run_dir) / "labels" / cfg.labeler,
                                  labeler=cfg.labeler, domain=_domain(ctx), progress=progress,
                                  vocab=vocabulary_of(sae.d), limit=cfg.llm_limit)


def judge(cfg, ctx, sae: Built, labels_df: pd.DataFrame, acts: dict, progress: bool = True) -> pd.DataFrame | None:
    """The RecSAE simulation score of the LLM labels (only with labeler 'openai' and a key; else None)."""
    if not (cfg.labeler == "openai" and os.environ.get("OPENAI_API_KEY")):
        return None
    top1 = stages.sasrec_outputs(cfg, ctx, "test").top1
    probes = judge_probes(sae.d, *acts["test"], ctx.inst["test"].hist, top1, cfg.seed)
    return labeling.judge_latents(labels_df, probes, _llm(cfg), Path(cfg.run_dir) / "labels" / "judge",
                                  domain=_domain(ctx), progress=progress)


def scores(cfg, ctx, models: dict[str, Model], built: dict[str, Built]) -> dict[str, pd.DataFrame]:
    """Every model's offline detection scores on held-out (dev + test) instances: its cards' signatures
    (the offline label's), threshold on training sequences."""
    hist = held_histories(ctx)
    out = {}
    for n, (i, md) in enumerate(models.items(), 1):
        progress.step(f"detection scores {n}/{len(models)}: {md.name}")
        out[i] = detection_scores(built[i].d, built[i].cards, md.idx_held, md.val_held, hist, seed=cfg.seed)
    return out


def score_table(models: dict[str, Model], built: dict[str, Built], sc: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Headline detection numbers per model (display names as rows): `score_summary` plus live latents."""
    rows = {}
    for i, md in models.items():
        live = built[i].d.stats.n_fire > 0
        rows[md.name] = {**score_summary(sc[i], live), "live_latents": int(live.sum())}
    return pd.DataFrame(rows).T


def vocabulary_step(cfg, ctx, models: dict[str, Model], built: dict[str, Built]) -> dict[str, dict]:
    """Per model (display name): the score its labels earn from what a person can read in them
    (`detection.metadata_scores`: the metadata vocabulary, all firings and each latent's upper half) and
    the label-free genre coherence of its latents' top items (`coherence`)."""
    hist = held_histories(ctx)
    out = {}
    for n, (i, md) in enumerate(models.items(), 1):
        progress.step(f"metadata scores and coherence {n}/{len(models)}: {md.name}")
        b = built[i]
        out[md.name] = {"metadata": metadata_scores(b.d, md.idx_held, md.val_held, hist, b.cards, seed=cfg.seed),
                        "coherence": coherence_summary(genre_coherence(b.d, seed=cfg.seed), b.d.stats.n_fire > 0)}
    return out


def vocabulary_table(vocab: dict[str, dict], headline: pd.DataFrame | None = None) -> pd.DataFrame:
    """The two vocabularies side by side per model (median balanced accuracy and share >= 0.8, random
    negatives) with the coherence; `headline` (`score_table`) adds the exemplar column of all firings."""
    rows = {}
    for name, v in vocab.items():
        a, u, c = v["metadata"]["all"], v["metadata"]["upper_half"], v["coherence"]
        row = {"metadata median": a["median_bal_acc_random"], "metadata share >= 0.8": a["share_bal_acc_ge_0.8_random"],
               "metadata median (upper half)": u["median_bal_acc_random"]}
        if headline is not None and name in headline.index:
            row["exemplars median"] = headline.at[name, "median_bal_acc_random"]
            row["exemplars share >= 0.8"] = headline.at[name, "share_bal_acc_ge_0.8_random"]
        row.update({"coherence median": c["median"], "coherence random": c["median_random"],
                    "share above random": c["share_above_random"]})
        rows[name] = row
    return pd.DataFrame(rows).T


def window_step(cfg, ctx, models: dict[str, Model], built: dict[str, Built],
                sc: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which part of the history does a latent read? `detection.window_sweep` per SAE size (the SAE and its
    baselines), on all firings and on each latent's upper half (STRONG_Q), plus each latent at the window
    it reads best (chosen on training data). Returns (one row per size, window, strong_q and model;
    the default SAE's per-latent best-window scores). An ablation (cfg.ablations): both frames are empty
    without it."""
    if not cfg.ablations:
        return pd.DataFrame(), pd.DataFrame(columns=["latent", "window"])
    ht, hh = ctx.inst["train"].hist, held_histories(ctx)
    frames, kept = [], {}
    for size in dict.fromkeys(md.size for md in models.values()):
        ids = [i for i, md in models.items() if md.size == size]
        group = {models[i].name: models[i].arrays for i in ids}
        full = {models[i].name: (built[i].d, sc[i]) for i in ids}
        progress.step(f"window sweep: {', '.join(group)}")
        frames.append(window_sweep(group, ht, hh, ctx.ds.items, cfg.top_n, cfg.seed, WINDOWS, full=full,
                                   strengths=(0.0, STRONG_Q), per_latent=True, keep=kept,
                                   item_pool=cfg.item_pool).assign(sae=size))
    return pd.concat(frames, ignore_index=True), kept[(models["sae"].name, 0.0)]


@dataclass
class ConceptRun:
    """The default SAE's concepts as stage 05 saves and shows them."""

    d: ConceptDictionary
    labels: pd.DataFrame        # latent, name, description, labeler, status, ...
    scores: pd.DataFrame        # offline detection scores of the SAE's labels
    tables: dict[str, pd.DataFrame]
    model_scores: dict[str, pd.DataFrame]  # model id -> detection scores (the SAE's is `scores`)
    judge: pd.DataFrame | None = None
    seconds: dict = field(default_factory=dict)


def concept_run(ctx, built: dict[str, Built], labels_df: pd.DataFrame, sc: dict[str, pd.DataFrame],
                sweep: pd.DataFrame, best: pd.DataFrame, sae_model, judge_df: pd.DataFrame | None = None) -> ConceptRun:
    """The default SAE's tables: dictionary tables with its labels and promoted items, labels, scores, the
    window sweep, the per-latent best-window scores and each latent's window ('reads_window')."""
    d = built["sae"].d
    E = ctx.model.item_table().detach().numpy()
    tables = dictionary_tables(d, label_names(labels_df), promoted_items(sae_model.W_dec.detach().numpy(), E))
    tables["labels"] = labels_df
    tables["scores"] = sc["sae"]
    tables["detection_by_window"] = sweep
    tables["scores_best_window"] = best
    tables["latents"]["reads_window"] = best.set_index("latent")["window"].reindex(np.arange(d.m)).to_numpy()
    tables["latents"]["io_overlap"] = io_overlaps(d, sae_model.W_dec.detach(), ctx.model.item_table().detach())
    return ConceptRun(d, labels_df, sc["sae"], tables, sc, judge_df)


def io_overlaps(d: ConceptDictionary, W_dec, E) -> np.ndarray:
    """(m,) per live latent, the share of its top-20 items by activation count that are also among the top 20
    its decoder direction promotes (`yardstick.io_overlap`); NaN for a latent that never fires."""
    from .yardstick import io_overlap, top_by_count

    out = np.full(d.m, np.nan)
    live = np.asarray(d.live, dtype=np.int64)
    out[live] = io_overlap(top_by_count(d.tables.counts), W_dec, E, live)
    return out


# ----------------------------------------------------------------------------------------------------
# Views for the notebook and the report (small DataFrames; the logic stays testable here)


def _titles(d: ConceptDictionary, ids) -> list[str]:
    return [str(d.display[i]) for i in ids]


def latent_overview(run: ConceptRun, n_titles: int = 5) -> pd.DataFrame:
    """One row per live latent: label, labeler, frequency, flags, detection AUC, top titles by lift."""
    t = run.d.tables
    lab = run.labels.set_index("latent")
    sc = run.scores.set_index("latent")
    rows = []
    for j in run.d.live.tolist():
        its = t.item[t.ptr[j]:min(t.ptr[j + 1], t.ptr[j] + n_titles)]
        rows.append({"latent": j, "label": lab.at[j, "name"] if j in lab.index else "",
                     "labeler": lab.at[j, "labeler"] if j in lab.index else "",
                     "freq": float(run.d.stats.freq[j]), "generic": bool(run.d.generic[j]),
                     "popularity": bool(run.d.popularity_flag[j]),
                     "auc_random": float(sc.at[j, "auc_random"]) if j in sc.index else float("nan"),
                     "bal_acc_random": float(sc.at[j, "bal_acc_random"]) if j in sc.index else float("nan"),
                     "top_movies": "; ".join(_titles(run.d, its))})
    return pd.DataFrame(rows).sort_values("freq", ascending=False).reset_index(drop=True)


def pick_example_latents(run: ConceptRun, n: int = 10, min_pos: int = 20) -> list[int]:
    """The most predictable non-generic latents (highest held-out ROC-AUC with enough positives)."""
    s = run.scores[(run.scores["n_pos"] >= min_pos)].copy()
    s = s[~run.d.generic[s["latent"].to_numpy()]]
    if s.empty:
        s = run.scores[run.scores["n_pos"] > 0]
    if s.empty:
        return run.d.live[:n].tolist()
    return s.sort_values(["auc_random", "latent"], ascending=[False, True])["latent"].head(n).astype(int).tolist()


def latent_view(run: ConceptRun, j: int, top: int = 10) -> dict[str, pd.DataFrame]:
    """A latent's card as tables: label, top movies by count / strength / lift, enrichment, promoted."""
    t = run.d.tables
    a, b = t.ptr[j], t.ptr[j + 1]
    df = pd.DataFrame({"item_id": t.item[a:b], "title": _titles(run.d, t.item[a:b]), "count": t.count[a:b],
                       "strength": t.strength[a:b].round(2), "lift": t.lift[a:b].round(2)})
    lab = run.labels[run.labels["latent"] == j]
    out = {"label": lab[["latent", "name", "description", "labeler"]].reset_index(drop=True),
           "by_count": df.sort_values(["count", "strength"], ascending=False).head(top).reset_index(drop=True),
           "by_strength": df.sort_values("strength", ascending=False).head(top).reset_index(drop=True),
           "by_lift": df.head(top).reset_index(drop=True)}
    for kind in ("genre", "decade"):
        e = run.tables[f"{kind}_enrichment"]
        out[f"{kind}_enrichment"] = (e[e["latent"] == j].sort_values("odds_ratio", ascending=False).head(top)
                                     .reset_index(drop=True))
    if "promoted" in run.tables:
        p = run.tables["promoted"]
        p = p[p["latent"] == j].copy()
        p["title"] = _titles(run.d, p["item_id"])
        out["promoted"] = p.reset_index(drop=True)
    return out


def show_tables(tables: dict[str, pd.DataFrame]) -> None:
    """Display each table of a dict (e.g. `latent_view`) as an HTML table under its name, in a notebook."""
    from IPython.display import HTML, display

    for name, df in tables.items():
        display(HTML(f"<h4>{name.replace('_', ' ')}</h4>"), df)


# ----------------------------------------------------------------------------------------------------
# Saving


def _clean(d: dict) -> dict:
    return {k: (None if v is None or pd.isna(v) else float(v)) for k, v in d.items()}


def vocabulary_summary(scores: dict, vocab: dict[str, dict], sweep: pd.DataFrame) -> dict:
    """Adds the vocabularies to the summary's per-model scores (new keys only): 'metadata' and
    'metadata_upper_half' (`vocabulary_step`), and 'exemplars_upper_half' read off the window sweep (whole
    history, STRONG_Q); returns the per-model coherence section."""
    for name, v in vocab.items():
        if name not in scores:
            continue
        scores[name]["metadata"] = _clean(v["metadata"]["all"])
        scores[name]["metadata_upper_half"] = _clean(v["metadata"]["upper_half"])
        if len(sweep):
            r = sweep[(sweep["model"] == name) & (sweep["strong_q"] == STRONG_Q)]
            r = r[r["window"] == r["window"].max()] if len(r) else r
            if len(r) and r["window"].iat[0] > 0:
                keep = [c for c in r.columns if c not in ("window", "strong_q", "model", "sae")]
                scores[name]["exemplars_upper_half"] = _clean(r.iloc[0][keep].to_dict())
    return {name: v["coherence"] for name, v in vocab.items()}


def save_concept_outputs(cfg, run: ConceptRun, expl: pd.DataFrame, user_view: pd.DataFrame,
                         movie_view: pd.DataFrame, scores_df: pd.DataFrame, specificity: dict | None = None,
                         vocab: dict[str, dict] | None = None, precision: dict | None = None) -> dict:
    """Full tables to the run folder; trimmed tables (top 20 items per latent), scores and examples to
    reports/<dataset>/concepts/. Returns the summary.json section; `specificity`
    (`explain.specificity_summary`) goes under its own key with the specific-first explanations, `vocab`
    (`vocabulary_step`) adds the metadata vocabulary to each model's scores and a 'coherence' section,
    `precision` (`label_precision`) the 'label_precision' section. 'labeler' names who made the labels
    ('offline-shared', 'openai:<model>' with a count each in 'labelers'), 'label_vocabulary_note' what the
    dataset's metadata cannot say (Grocery: category ids only)."""
    save_dictionaries(run.tables, Path(cfg.run_dir) / "concepts")
    small = dict(run.tables)
    small["latent_items"] = small["latent_items"][small["latent_items"]["rank"] <= 20]
    for name in ("genre_enrichment", "decade_enrichment"):
        small[name] = small[name][small[name]["significant"]]
    small["scores_raw_dimensions"] = run.model_scores["raw"]
    small["scores_random_sae"] = run.model_scores["random"]
    small["explanations"] = expl
    small["user_profile"] = user_view
    small["movie_profile"] = movie_view
    if run.judge is not None:
        small["judge"] = run.judge
    rep = Path(cfg.report_dir) / "concepts"
    for name, df in small.items():
        with artifacts.atomic_path(rep / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
    examples = []
    for j in pick_example_latents(run, 10):
        lab = run.labels[run.labels["latent"] == j].iloc[0]
        sc = run.scores[run.scores["latent"] == j].iloc[0]
        t = run.d.tables
        examples.append({"latent": j, "name": lab["name"], "description": lab["description"],
                         "labeler": lab["labeler"], "freq": float(run.d.stats.freq[j]),
                         "auc_random": float(sc["auc_random"]), "bal_acc_random": float(sc["bal_acc_random"]),
                         "auc_matched": float(sc["auc_matched"]), "n_pos": int(sc["n_pos"]),
                         "top_by_lift": _titles(run.d, t.item[t.ptr[j]:min(t.ptr[j + 1], t.ptr[j] + 5)])})
    out = {"live_latents": int((run.d.stats.n_fire > 0).sum()), "n_latents": run.d.m,
           "generic_latents": int(run.d.generic.sum()), "popularity_latents": int(run.d.popularity_flag.sum()),
           "generic_slot_share": generic_slot_share(run.d),
           "labeler": cfg.labeler, "label_status": run.labels["status"].value_counts().to_dict(),
           "labelers": run.labels["labeler"].value_counts().to_dict(), "labels_note": labeling.provenance(run.labels),
           "label_vocabulary_note": run.d.meta.get("vocabulary_note", ""),
           "scores": {k: {c: (None if pd.isna(v) else float(v)) for c, v in row.items()}
                      for k, row in scores_df.to_dict(orient="index").items()},
           "seconds": run.seconds, "examples": examples,
           "detection_by_window": [{k: (None if pd.isna(v) else (v if isinstance(v, str) else float(v)))
                                    for k, v in r.items()}
                                   for r in run.tables.get("detection_by_window", pd.DataFrame()).to_dict("records")],
           "explanations": render_explanations(expl, n_reasons=3, specific_first=False)}
    if precision is not None:
        out["label_precision"] = precision
    if vocab is not None:
        out["coherence"] = vocabulary_summary(out["scores"], vocab, run.tables.get("detection_by_window", pd.DataFrame()))
    if specificity is not None:
        out["specificity"] = {**specificity, "explanations": render_explanations(expl, n_reasons=3)}
    out["poster"] = poster.save_poster_views(cfg.report_dir, run.d, run.labels, user_view, movie_view, cfg.labeler)
    if run.judge is not None:
        out["judge"] = {"interpretable_share": float(run.judge["interpretable"].mean()),
                        "mean_confidence": float(run.judge["confidence"].mean())}
    out.update(llm_report(cfg))
    return out


def generic_slot_share(d: ConceptDictionary) -> float:
    """Share of the training codes' active slots (firings) held by generic latents: how much of what the SAE
    writes for a user goes to latents that fire for everyone (benchmarks/bench_frontier.py's measure)."""
    n = d.stats.n_fire.astype(np.float64)
    return float(n[d.generic].sum() / max(n.sum(), 1.0))


LLM_REPORT_KEYS = ("n_failed", "failures_by_kind", "failed_latents", "n_skipped_budget", "n_unlabelled", "budget")


def llm_report(cfg) -> dict:
    """What the LLM stages left undone (labels and judge meta files): the summary's `llm` section and its
    `degraded` list, which the pipeline turns into a non-zero exit. Empty for the offline labeler."""
    if cfg.labeler != "openai":
        return {}
    out, problems = {}, []
    for task, path in (("labels", Path(cfg.run_dir) / "labels" / cfg.labeler / "labels_meta.json"),
                       ("judge", Path(cfg.run_dir) / "labels" / "judge" / "judge_meta.json")):
        if path.exists():
            meta = artifacts.read_json(path)
            out[task] = {k: meta[k] for k in LLM_REPORT_KEYS if k in meta}
            problems += [f"{task}: {p}" for p in meta.get("problems", [])]
    return {"llm": out, "degraded": problems} if out else {}


def summary_table(out: dict) -> pd.DataFrame:
    """The scalar part of the summary.json 'concepts' section as a two-column table (for the notebook)."""
    rows = [(k, v) for k, v in out.items() if not isinstance(v, (dict, list))]
    rows += [(f"label_status.{k}", v) for k, v in out.get("label_status", {}).items()]
    rows += [(f"seconds.{k}", round(v, 1)) for k, v in out.get("seconds", {}).items()]
    return pd.DataFrame(rows, columns=["key", "value"]).set_index("key")


# ----------------------------------------------------------------------------------------------------
# Label precision (what a label names, checked on the latent's top items)


def with_output_side(cards: list[dict], d: ConceptDictionary, W_dec, E, top: int = 10) -> list[dict]:
    """The cards with 'promoted': the `top` items each latent's decoder direction promotes (W_dec[j] . e_i,
    `dictionary.promoted_items`) as card entries, so labels can say what the latent's output side does."""
    from .cards import item_entry

    ids, _ = promoted_items(np.asarray(W_dec), np.asarray(E), top)
    return [{**c, "promoted": [item_entry(d, int(i)) for i in ids[int(c["latent"])] if int(i) > 0]} for c in cards]


def label_precision(models: dict[str, Model], built: dict[str, Built], hist_held: np.ndarray,
                    labels_df: pd.DataFrame | None = None, ids=("sae", "raw", "random")) -> dict:
    """The summary's `label_precision`: per model (display name) the offline-shared labeler's precision
    (`naming.precision_stats`: median and share >= 0.6 over labels that name something, share naming
    nothing, distinct stems, specific latents; also on held-out top items); with `labels_df` (the SAE's
    labels as the stage made them, any labeler) one more entry for those labels, named by their labeler,
    and one for the enrichment labeler the offline labels came from before ('SAE, enrichment labeler')."""
    from .cards import offline_label
    from .naming import heldout_top_items, label_precision_rows, precision_stats, shared_label, vocabulary_of

    out = {}
    for i in ids:
        if i not in built:
            continue
        b, md = built[i], models[i]
        vocab = vocabulary_of(b.d)
        held = heldout_top_items(b.d, md.idx_held, md.val_held, hist_held)
        labs = {int(c["latent"]): shared_label(c, vocab) for c in b.cards}
        out[md.name] = precision_stats(label_precision_rows(b.cards, labs, vocab, b.d.generic, held), naming_labeler())
        if i == "sae":
            old = {int(c["latent"]): offline_label(c)["name"] for c in b.cards}
            out[f"{md.name}, enrichment labeler"] = precision_stats(
                label_precision_rows(b.cards, old, vocab, b.d.generic, held), "offline-metadata (enrichment)")
            for who, g in ([] if labels_df is None else labels_df.groupby("labeler", sort=True)):
                if who in (naming_labeler(),):
                    continue        # the entry above
                given = {int(r.latent): r.name for r in g.itertuples() if isinstance(r.name, str)}
                out[f"{md.name}, {who}"] = precision_stats(
                    label_precision_rows([c for c in b.cards if int(c["latent"]) in given], given, vocab,
                                         b.d.generic, held), str(who))
    return out


def naming_labeler() -> str:
    from .naming import OFFLINE_SHARED
    return OFFLINE_SHARED
