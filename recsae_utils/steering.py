"""Stage 06 (notebooks/06_interventions.ipynb): does steering along a latent move the recommendations
towards its concept? The measurements themselves live in `interventions`; this module picks the units,
labels them from their own training firings, runs the dose-response, the calibrated steerability, the
ablation and the de-biasing curve for the SAE and its two baselines (signed raw h_u dimensions at the SAE's
firing rate, a random SAE of its shape), and builds the summary section and the steering card.

Every model is labelled the same way (the offline labels' rule, from `dictionary`): up to
LABEL_MAX_GENRES significantly enriched genres (categories on Grocery) and LABEL_MAX_DECADES decades, and
its concept items = exemplars by shrunk lift. Units = live, non-generic units with such a label (a seeded
sample when there are more than asked for), steered on a seeded sample of test instances where they are
inactive.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import cards as CA
from . import dictionary as DI
from . import interventions as I
from . import progress
from . import yardstick as Y

N_UNITS = 300      # units per model (a seeded sample of the eligible ones)
N_ROWS = 300       # test instances the doses are measured on (seeded sample)
N_RANDOM = 100     # random directions of the steerability null
ABLATION_ROWS = 100
DEBIAS_FACTORS = (1.0, 0.5, 0.0, -0.5, -1.0)
DEBIAS_ROWS = 20_000  # test instances behind the de-biasing curve (seeded sample past it; ML-1M and Grocery have fewer)
# the poster's "offbeat 2000 comedies" concept, found by its top items (ML-1M titles)
CARD_TITLES = ("Four Weddings and a Funeral", "Best in Show", "Lock, Stock", "Wonder Boys")
MODEL_NAMES = {"sae": "SAE", "raw": "raw h_u dimensions", "random": "random SAE"}


# ---------------------------------------------------------------------------------------------------
# Units, labels, concept items


@dataclass
class UnitLabels:
    """Per unit of one model, read off its dictionary (built from its training firings)."""

    freq: np.ndarray              # (m,) firing frequency
    labels: list                  # label feature columns (ItemFeatures) per unit
    concepts: list                # concept item ids per unit (exemplars, best first)
    top_count: list               # item ids per unit by activation count (best first, up to 20)
    popularity_flag: np.ndarray   # (m,) bool: the dictionary's popularity-driven flag (live units only)


def unit_labels(d: DI.ConceptDictionary, n_ex: int = CA.LABEL_MAX_ITEMS) -> UnitLabels:
    """Label features (significant genres / decades by odds ratio, share of slots >= ENRICH_MIN_SHARE, as the
    offline labels) and concept items (count >= EXEMPLAR_MIN_COUNT, shrunk lift >= EXEMPLAR_MIN_LIFT) of every
    unit of dictionary `d` (`dictionary.build_dictionaries` of the model's training code)."""
    enr, tab, feats = d.enrich, d.tables, d.feats
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (enr.p_value < DI.ENRICH_ALPHA) & (enr.odds_ratio >= DI.ENRICH_MIN_OR) & (enr.share_top >= DI.ENRICH_MIN_SHARE)
    orr = np.where(ok, enr.odds_ratio, -np.inf)
    labels, concepts, top_count = [], [], []
    for j in range(d.m):
        pick = []
        for kind, cap in (("genre", CA.LABEL_MAX_GENRES), ("decade", CA.LABEL_MAX_DECADES)):
            cols = np.flatnonzero((feats.kind == kind) & ok[j])
            pick += cols[np.argsort(-orr[j, cols], kind="stable")][:cap].tolist()
        labels.append(pick)
        s = slice(tab.ptr[j], tab.ptr[j + 1])
        good = (tab.count[s] >= CA.EXEMPLAR_MIN_COUNT) & (tab.lift_shrunk[s] >= CA.EXEMPLAR_MIN_LIFT)
        concepts.append(tab.item[s][good][:n_ex])
        top_count.append(tab.item[s][np.argsort(-tab.count[s], kind="stable")][:20])
    return UnitLabels(d.stats.freq, labels, concepts, top_count, d.popularity_flag)


def pick_units(freq: np.ndarray, labels: list, n: int, seed: int) -> np.ndarray:
    """Live, non-generic (freq <= GENERIC_FREQ) units with a label; a seeded sample of n when there are more."""
    ok = np.flatnonzero((freq > 0) & (freq <= DI.GENERIC_FREQ) & np.array([len(x) > 0 for x in labels], dtype=bool))
    if len(ok) > n:
        ok = np.sort(np.random.default_rng(seed).choice(ok, n, replace=False))
    return ok


# ---------------------------------------------------------------------------------------------------
# The models and their measurements


@dataclass
class Directions:
    """One model's dictionary of directions in h_u space and its codes (train; test rows of the context)."""

    D: torch.Tensor
    idx_train: np.ndarray
    val_train: np.ndarray
    idx_test: np.ndarray
    val_test: np.ndarray


def model_directions(cfg, ctx, sae, acts: dict) -> dict[str, Directions]:
    """'sae', 'raw', 'random' with the codes stage 05 uses (`concepts.model_codes`: raw dimensions standardised
    with training statistics at the SAE's firing rate, the random SAE's cached codes); held-out codes are
    dev then test, the test part is their tail."""
    from .concepts import model_codes
    from .stages import random_baseline

    models = model_codes(cfg, ctx, {"main": sae}, acts)
    n_test = len(ctx.h["test"])
    dirs = {"sae": sae.W_dec.detach().float(), "raw": I.signed_basis(ctx.h["train"].shape[1]),
            "random": random_baseline(sae, ctx.h["train"]).W_dec.detach().float()}
    return {k: Directions(D, models[k].idx_train, models[k].val_train, models[k].idx_held[-n_test:],
                          models[k].val_held[-n_test:]) for k, D in dirs.items()}


@dataclass
class ModelResult:
    units: np.ndarray
    eligible: int             # live non-generic units with a label (before sampling)
    dose: pd.DataFrame        # interventions.dose_response
    steer: pd.DataFrame       # interventions.steerability
    ul: UnitLabels
    labels: np.ndarray        # (n_items, L) bool
    concepts: np.ndarray      # (n_items, L) bool
    why: dict = field(default_factory=dict)   # `alignment`: where the directions point in item space


def measure(sctx: I.SteeringContext, rows: np.ndarray, d: Directions, dic: DI.ConceptDictionary,
            n_units: int = N_UNITS, n_random: int = N_RANDOM, seed: int = 0,
            rand_tops: tuple | None = None, span: torch.Tensor | None = None, rand_grid: dict | None = None,
            rand_kl: np.ndarray | None = None) -> ModelResult:
    """Label the model's units from its dictionary `dic`, pick them, dose-response on `rows` and the
    calibrated steerability. `rand_tops` (`interventions.random_tops(sctx, rows, n_random, seed=seed + 1)`)
    and `span` (`item_span(sctx.E)`) are the same for every model: a stage computes them once. With
    `rand_grid` ({beta: random_tops at that dose}) and `rand_kl` (`interventions.random_kls` at I.BETAS) the
    steerability is also judged against random directions at the unit's own KL (`steerable_kl`)."""
    ul = unit_labels(dic)
    feats = dic.feats
    eligible = pick_units(ul.freq, ul.labels, len(d.D), seed)
    units = pick_units(ul.freq, ul.labels, n_units, seed)
    n_items = len(sctx.E)
    labels = I.label_items(feats.M, [ul.labels[u] for u in units])
    conc = I.item_sets(n_items, [ul.concepts[u] for u in units])
    if not len(units):
        empty = pd.DataFrame(columns=["unit", "beta", "label_gain", "concept_after"])
        return ModelResult(units, 0, empty, pd.DataFrame(columns=["unit", "gain", "random_q", "steerable"]), ul,
                           labels, conc)
    inactive = I.inactive_rows(d.idx_test[rows], d.val_test[rows], units)
    dose = I.dose_response(sctx, rows, d.D, units, inactive, labels, conc)
    rand = I.random_gains(sctx, rows, inactive, labels, n_random=n_random, seed=seed + 1, tops=rand_tops)
    steer = I.steerability(dose, rand, units)
    if rand_grid is not None and rand_kl is not None:
        gains = np.stack([I.random_gains(sctx, rows, inactive, labels, n_random=n_random, beta=b, seed=seed + 1,
                                         tops=rand_grid[b]) for b in I.BETAS])
        kl = I.steerability_matched_kl(dose, gains, rand_kl, units)
        steer = steer.merge(kl[["unit", "kl", "random_q_kl", "beyond", "steerable_kl"]], on="unit", how="left")
    return ModelResult(units, len(eligible), dose, steer, ul, labels, conc,
                       alignment(sctx.E, d.D[torch.from_numpy(units)], labels, steer["gain"].to_numpy(), span=span))


SPAN = 20   # the item table's main directions in `alignment`


def item_span(E: torch.Tensor, q: int = SPAN) -> torch.Tensor:
    """(q, d) float64: the q main directions of the centred item table (row 0, padding, left out)."""
    Eb = E[1:].double()
    return torch.linalg.svd(Eb - Eb.mean(0), full_matrices=False)[2][:q]


def alignment(E: torch.Tensor, U: torch.Tensor, labels: np.ndarray, gain: np.ndarray | None = None,
              q: int = SPAN, span: torch.Tensor | None = None) -> dict:
    """Why a direction steers or not: the median share of its squared norm in the q main directions of the
    centred item table (only there does a direction spread the items' scores), its median cosine with its
    label's direction (mean embedding of the label's items minus the catalogue mean) and, given the units'
    gains at beta = 1, their Spearman correlation with that cosine. `span`: `item_span(E, q)` if computed."""
    from scipy.stats import spearmanr

    Eb = E[1:].double()
    Vt = item_span(E, q) if span is None else span
    Un = F.normalize(U.double(), dim=1)
    Y = torch.as_tensor(np.asarray(labels)[1:], dtype=torch.float64)                    # (n_items - 1, L)
    oracle = (Y.T @ Eb) / Y.sum(0).clamp(min=1)[:, None] - Eb.mean(0)
    cos = F.cosine_similarity(Un, oracle, dim=1).numpy()
    out = {"in_span": float(np.median(((Un @ Vt.T) ** 2).sum(1).numpy())), "label_cos": float(np.median(cos))}
    if gain is not None and len(gain) > 2 and np.isfinite(gain).sum() > 2:
        out["gain_vs_label_cos_spearman"] = float(spearmanr(gain, cos, nan_policy="omit")[0])
    return out


def random_in_span(d: int, E: torch.Tensor, n: int = 1000, seed: int = 0, q: int = SPAN,
                   span: torch.Tensor | None = None) -> float:
    """`alignment`'s in_span for seeded random unit directions: the level a direction reaches by chance."""
    U = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return alignment(E, U, np.zeros((len(E), 1), bool), q=q, span=span)["in_span"]


def dose_table(results: dict[str, ModelResult]) -> pd.DataFrame:
    """Per model and beta: medians across units (label gain with its interquartile range, label and concept
    share after, NDCG@10 after, KL, share replaced)."""
    frames = [r.dose.assign(model=MODEL_NAMES.get(k, k)) for k, r in results.items() if len(r.dose)]
    if not frames:
        return pd.DataFrame()
    q = lambda p: (lambda s: s.quantile(p))
    g = pd.concat(frames).groupby(["model", "beta"], sort=False)
    return g.agg(units=("unit", "nunique"), label_before=("label_before", "median"),
                 label_gain=("label_gain", "median"), label_gain_q25=("label_gain", q(0.25)),
                 label_gain_q75=("label_gain", q(0.75)), concept_before=("concept_before", "median"),
                 concept_after=("concept_after", "median"), concept_q25=("concept_after", q(0.25)),
                 concept_q75=("concept_after", q(0.75)), ndcg_before=("ndcg_before", "median"),
                 ndcg_after=("ndcg_after", "median"), kl=("kl", "median"), replaced=("replaced", "median")
                 ).reset_index()


# ---------------------------------------------------------------------------------------------------
# The steering card


def card_latent(items: pd.DataFrame, res: ModelResult, titles=CARD_TITLES) -> tuple[int, str]:
    """The SAE unit whose top items by count overlap most with `titles` (substring matches, case-insensitive);
    ties and no overlap at all: the most steerable unit (largest gain over its random threshold)."""
    st = res.steer.dropna(subset=["gain"])
    margin = (st["gain"] - st["random_q"]).to_numpy() if len(st) else np.zeros(0)
    best = int(st["unit"].to_numpy()[np.argmax(margin)]) if len(st) else (int(res.units[0]) if len(res.units) else 0)
    if "title" not in items.columns:
        return best, "most steerable"
    t = items["title"].astype(str).str.lower()
    hit = set(items["item_id"][t.apply(lambda s: any(x.lower() in s for x in titles))].astype(int))
    live = np.flatnonzero(res.ul.freq > 0)
    if not hit or not len(live):
        return best, "most steerable"
    overlap = np.array([len(hit.intersection(res.ul.top_count[j].tolist())) for j in live])
    if overlap.max() == 0:
        return best, "most steerable"
    return int(live[np.argmax(overlap)]), f"top items overlap {int(overlap.max())} of {len(titles)} titles"


# ---------------------------------------------------------------------------------------------------
# The whole stage


@dataclass
class StageResult:
    results: dict[str, ModelResult]
    table: pd.DataFrame
    ablation: pd.DataFrame
    debias: pd.DataFrame
    card: pd.DataFrame
    card_info: dict
    seconds: dict = field(default_factory=dict)
    random_in_span: float | None = None


def run_stage(cfg, ctx, sae, acts: dict, n_units: int = N_UNITS, n_rows: int = N_ROWS, n_random: int = N_RANDOM,
              seed: int | None = None) -> tuple[I.SteeringContext, StageResult]:
    """Dose-response and steerability for the SAE and its baselines, ablation and the de-biasing curve of the
    SAE's popularity-flagged latents, the steering card. Returns the test split's steering context too."""
    from tqdm import tqdm  # text bars: tqdm.auto warns in every kernel without ipywidgets

    seed = cfg.seed if seed is None else seed
    t0 = time.time()
    secs = {}
    E = ctx.model.item_table().detach().float()
    cs = Y.concept_set(DI.item_features(ctx.ds.items, len(E)), len(E), cfg.concept_min_items)
    sctx = I.split_context(ctx, sae, "test", concepts=Y.steering_latents(E, sae.W_dec.detach(), cs))   # steer="genre:Horror"
    rows = np.sort(np.random.default_rng(seed).choice(len(sctx.h), min(n_rows, len(sctx.h)), replace=False))
    dirs = model_directions(cfg, ctx, sae, acts)
    # the null, the same for every model: random directions at every dose and their KL (matched-KL control)
    rand_grid = {b: I.random_tops(sctx, rows, n_random=n_random, beta=b, seed=seed + 1) for b in I.BETAS}
    rand_tops = rand_grid[1.0]
    rand_kl = I.random_kls(sctx, rows, n_random, I.BETAS, seed=seed + 1)
    span = item_span(sctx.E)
    secs["setup"] = time.time() - t0
    results, dics = {}, {}
    for k, d in tqdm(dirs.items(), desc="dose-response", total=len(dirs)):
        t1 = time.time()
        dics[k] = DI.build_dictionaries(d.idx_train, d.val_train, ctx.inst["train"].hist, ctx.ds.items, len(d.D),
                                        top_n=cfg.top_n, item_pool=cfg.item_pool)   # stage 05's tables and flags
        results[k] = measure(sctx, rows, d, dics[k], n_units, n_random, seed, rand_tops, span, rand_grid, rand_kl)
        secs[k] = time.time() - t1
        progress.step(f"interventions: {MODEL_NAMES[k]}: {len(results[k].units)} units, steerable "
                      f"{results[k].steer['steerable'].mean() if len(results[k].steer) else float('nan'):.3f} "
                      f"({secs[k]:.0f}s)")
    t1 = time.time()
    s, item_pct, feats = results["sae"], dics["sae"].item_pct, dics["sae"].feats
    ab = I.ablation(sctx, s.units, s.labels, s.concepts, max_rows=ABLATION_ROWS, seed=seed) if len(s.units) else \
        pd.DataFrame()
    flag = np.flatnonzero(s.ul.popularity_flag)
    deb = debias_by_sign(sctx, flag, dics["sae"].pop_spearman, item_pct, seed)
    secs["ablation_debias"] = time.time() - t1
    progress.step(f"interventions: ablation of {len(ab)} units, de-biasing with {len(flag)} flagged latents")
    latent, why = card_latent(ctx.ds.items, s)
    row = I.example_row(sctx)                     # the browser's steering examples use the same instance
    user = int(sctx.users[row])
    card = I.recommend(sctx, user, steer={latent: 1.0})
    lab = [feats.names[c] for c in s.ul.labels[latent]]
    info = {"latent": latent, "label": ", ".join(n.split(":", 1)[1] for n in lab) or "(no label)", "chosen_by": why,
            "user": user, "instance": f"test instance {row}, user {user}'s last held-out one, as in the browser",
            "beta": 1.0, "n_flagged": int(len(flag)),
            "top_items": [str(ctx.ds.items.set_index("item_id").get("title", pd.Series(dtype=str)).get(i, i))
                          for i in s.ul.top_count[latent][:5].tolist()]}
    secs["total"] = time.time() - t0
    return sctx, StageResult(results, dose_table(results), ab, deb, card, info, secs,
                             random_in_span(sctx.E.shape[1], sctx.E, seed=seed, span=span))


def debias_by_sign(sctx: I.SteeringContext, flag: np.ndarray, pop_spearman: np.ndarray, item_pct: np.ndarray,
                   seed: int) -> pd.DataFrame:
    """The de-biasing curve of the popularity-flagged latents together ('all') and split by the sign of each
    one's popularity correlation ('pro-popularity' > 0, 'anti-popularity' < 0): scaling an anti-popularity
    latent down raises popularity, so the joint curve mixes two opposite effects. Columns of
    `interventions.debias_curve` plus 'latents' (the group) and 'n_latents'."""
    rho = np.asarray(pop_spearman, np.float64)[flag] if len(flag) else np.zeros(0)
    groups = {"all": flag, "pro-popularity": flag[rho > 0], "anti-popularity": flag[rho < 0]}
    parts = [I.debias_curve(sctx, ids, item_pct, factors=DEBIAS_FACTORS, max_rows=DEBIAS_ROWS, seed=seed)
             .assign(latents=name, n_latents=len(ids)) for name, ids in groups.items() if name == "all" or len(ids)]
    return pd.concat(parts, ignore_index=True)


def _f(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def summary(res: StageResult) -> dict:
    """The summary.json section `interventions`."""
    models = {}
    for k, r in res.results.items():
        name = MODEL_NAMES[k]
        t = res.table[res.table["model"] == name] if len(res.table) else pd.DataFrame()
        per = lambda col: {f"{b:g}": _f(v) for b, v in zip(t["beta"], t[col])} if len(t) else {}
        models[name] = {"n_units": int(len(r.units)), "eligible_units": int(r.eligible),
                        "steerable_share": _f(r.steer["steerable"].mean()) if len(r.steer) else None,
                        "steerable_share_matched_kl": _f(r.steer["steerable_kl"].mean())
                        if "steerable_kl" in r.steer and len(r.steer) else None,
                        "matched_kl_beyond_share": _f(r.steer["beyond"].mean())
                        if "beyond" in r.steer and len(r.steer) else None,
                        "label_before": _f(t["label_before"].iloc[0]) if len(t) else None,
                        "concept_before": _f(t["concept_before"].iloc[0]) if len(t) else None,
                        "label_gain": per("label_gain"), "label_gain_q25": per("label_gain_q25"),
                        "label_gain_q75": per("label_gain_q75"), "concept_share": per("concept_after"),
                        "ndcg@10": per("ndcg_after"), "ndcg@10_before": _f(t["ndcg_before"].iloc[0]) if len(t) else None,
                        "kl": per("kl"), "replaced": per("replaced"), "why": r.why}
    ab = res.ablation
    cols = ["concept_in", "concept_left", "concept_left_control", "label_in", "label_left", "label_left_control"]
    ablation = {"n_units": int(len(ab)), **{c: _f(ab[c].median()) for c in cols}} if len(ab) else {"n_units": 0}
    card = res.card
    return {"betas": [float(b) for b in I.BETAS], "models": models, "ablation": ablation,
            "random_in_span": _f(res.random_in_span), "span": SPAN,
            "debias": [{k: (v if isinstance(v, str) else _f(v)) for k, v in row.items()}
                       for row in res.debias.to_dict("records")],
            "steering_card": {**res.card_info,
                              "before": [str(x) for x in card["title_before"].fillna(card["item_before"].astype(str))],
                              "after": [str(x) for x in card["title_after"].fillna(card["item_after"].astype(str))]},
            "seconds": {k: round(v, 1) for k, v in res.seconds.items()}}
