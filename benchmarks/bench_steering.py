"""Does steering along a latent move the recommendations towards its concept? Dose-response on a finished
run, read-only (nothing is written under the run folder).

For the run's main SAE, the signed raw h_u dimensions (at the SAE's firing rate) and a random SAE of the
same shape: every unit is labelled from its own TRAINING firings (the enrichment of dictionary.py: up to 2
significantly enriched genres and 1 decade, as the offline labels name them; concept items = its exemplars
by shrunk lift). A seeded sample of live, non-generic units with a label is steered by beta * median||h_u||
along its direction on held-out (test) instances where it is inactive (interventions.dose_response), and
is steerable when its label-share gain at beta = 1 beats the 95th percentile of 100 random unit directions
for the same label on the same instances (interventions.random_gains).

Why-probes on the SAE's units: its ENCODER rows as directions, its decoder rows projected on the 20 main
directions of the centred item table, an "oracle" direction per label (mean item embedding of the label's
items minus the catalogue mean), cosines between them, each direction's share in the item table's main
directions and the score spread it makes per unit of norm, the share of ||h_u||
held by generic latents, and how the item table is laid out (mean direction, norms against popularity).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_steering.py --run-dir /work/runs/ml-1m
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from recsae_utils import artifacts, config, data, stages, train
from recsae_utils import detection as DT
from recsae_utils import dictionary as DI
from recsae_utils import interventions as I
from recsae_utils import sae as sae_mod
from recsae_utils import steering as ST


def load_run(run: Path, cfg) -> dict:
    """Data, instances, masking CSR, SASRec's item table, cached h_u and the main SAE, straight from files."""
    if not (run / "data" / "manifest.json").exists():
        raise SystemExit(f"{run}/data/manifest.json: no finished data stage in this run folder")
    parts = {s: pd.read_parquet(run / "data" / f"{s}.parquet") for s in ("train", "dev", "test", "items")}
    if "genres" in parts["items"].columns:
        parts["items"]["genres"] = parts["items"]["genres"].map(lambda g: list(g) if g is not None else [])
    man = artifacts.read_json(run / "data" / "manifest.json")
    ds = data.Dataset(man["dataset"], parts["train"], parts["dev"], parts["test"], parts["items"], man)
    inst = data.build_instances(ds, cfg.history_max)
    ckpt = run / "sasrec" / f"seed{cfg.seeds[0]}" / "sasrec.safetensors"
    model = train.load_sasrec(ckpt)
    key = stages.sasrec_key(ckpt, ds)
    hu = run / "hu"
    h = {}
    for s in ("train", "test"):
        f = hu / f"{s}.npy"
        cached = f.exists() and (hu / "hu.json").exists() and artifacts.read_json(hu / "hu.json").get("sasrec") == key
        h[s] = torch.from_numpy(np.load(f)) if cached else train.user_vectors(model, inst[s], batch_size=4096)
    sae_path = run / "sae" / f"m{cfg.sae_latents}_k{cfg.sae_k}_{cfg.sae_variant}" / "sae.safetensors"
    if not sae_path.exists():
        raise SystemExit(f"{sae_path}: no finished SAE in this run folder")
    return {"ds": ds, "inst": inst, "mask": data.user_item_csr(ds), "E": model.item_emb.weight.detach().float(),
            "h": h, "sae": sae_mod.load_sae(sae_path)}


def measure(name, ctx, rows, D, units, inactive, labels, concepts, n_random, seed) -> tuple[pd.DataFrame, pd.DataFrame]:
    dose = I.dose_response(ctx, rows, D, units, inactive, labels, concepts)
    rand = I.random_gains(ctx, rows, inactive, labels, n_random=n_random, seed=seed)
    st = I.steerability(dose, rand, units)
    return dose.assign(dictionary=name), st.assign(dictionary=name)


def summarise(dose: pd.DataFrame, st: pd.DataFrame) -> pd.DataFrame:
    q = lambda p: (lambda s: s.quantile(p))
    g = dose.groupby(["dictionary", "beta"], sort=False)
    out = g.agg(units=("unit", "nunique"), label_before=("label_before", "median"),
                label_gain=("label_gain", "median"), label_gain_q25=("label_gain", q(0.25)),
                label_gain_q75=("label_gain", q(0.75)), concept_before=("concept_before", "median"),
                concept_after=("concept_after", "median"), ndcg_before=("ndcg_before", "median"),
                ndcg_after=("ndcg_after", "median"), kl=("kl", "median"), replaced=("replaced", "median"))
    steer = st.groupby("dictionary", sort=False)["steerable"].mean().rename("steerable_share")
    return out.join(steer, on="dictionary")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="/work/runs/ml-1m")
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--random", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="full")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    cfg = config.load(Path(a.run_dir).name, a.profile)
    r = load_run(Path(a.run_dir), cfg)
    ds, inst, sae = r["ds"], r["inst"], r["sae"]
    h_tr, h_te = r["h"]["train"], r["h"]["test"]
    n_items = ds.n_items
    X = DI.incidence(inst["train"].hist, n_items)
    feats = DI.item_features(ds.items, n_items)
    popularity = np.zeros(n_items)
    popularity[ds.items["item_id"].to_numpy()] = ds.items["popularity"].to_numpy(dtype=np.float64)
    item_pct = DI.item_popularity_pct(popularity, np.asarray(X.getnnz(axis=0), dtype=np.float64))
    te = inst["test"]
    ctx = I.steering_context(r["E"], sae, h_te, te.user, te.item, r["mask"], ds.items)
    rows = np.sort(np.random.default_rng(a.seed).choice(len(h_te), min(a.rows, len(h_te)), replace=False))
    print(f"loaded in {time.time() - t0:.0f}s; median ||h_u|| (test) {ctx.h_norm:.2f}; {len(rows)} test rows")

    # dictionaries: (directions, train code, held-out code)
    kr = DT.raw_dimension_k(h_tr.shape[1], sae.cfg.k, sae.cfg.n_latents)
    mu, sd = h_tr.numpy().mean(0), h_tr.numpy().std(0)
    rnd = sae_mod.random_sae(sae.cfg, x_mean=h_tr.mean(0))
    dicts = {"sae": (sae.W_dec.detach(), *sae_mod.encode_sparse(sae, h_tr), ctx.z_idx.numpy(), ctx.z_val.numpy()),
             "raw": (I.signed_basis(h_tr.shape[1]), *DT.dense_to_sparse(h_tr.numpy(), kr, both_signs=True),
                     *DT.dense_to_sparse(h_te.numpy(), kr, mu, sd, both_signs=True)),
             "random_sae": (rnd.W_dec.detach(), *sae_mod.encode_sparse(rnd, h_tr), *sae_mod.encode_sparse(rnd, h_te))}
    doses, steers, keep = [], [], {}
    for name, (D, itr, vtr, ite, vte) in dicts.items():
        t1 = time.time()
        ul = ST.unit_labels(DI.build_dictionaries(itr, vtr, inst["train"].hist, ds.items, len(D)))
        freq, lab, con = ul.freq, ul.labels, ul.concepts
        units = ST.pick_units(freq, lab, a.units, a.seed)
        if not len(units):
            print(f"{name}: no live non-generic unit with a label")
            continue
        labels = I.label_items(feats.M, [lab[u] for u in units])
        concepts = I.item_sets(n_items, [con[u] for u in units])
        inactive = I.inactive_rows(ite[rows], vte[rows], units)
        d, s = measure(name, ctx, rows, D, units, inactive, labels, concepts, a.random, a.seed + 1)
        doses.append(d), steers.append(s)
        keep[name] = (units, labels, concepts, inactive, freq, ul)
        print(f"{name}: {len(units)} units (of {int(((freq > 0) & (freq <= DI.GENERIC_FREQ)).sum())} live non-generic), "
              f"steerable {s.steerable.mean():.3f}  ({time.time() - t1:.0f}s)")

    # why-probes on the SAE's units: encoder rows and oracle label directions as dictionaries
    units, labels, concepts, inactive, freq, ul_sae = keep["sae"]
    Eb = r["E"][1:]
    oracle = torch.stack([Eb[torch.from_numpy(labels[1:, j])].mean(0) for j in range(len(units))]) - Eb.mean(0)
    W_dec, W_enc = sae.W_dec.detach()[units], sae.W_enc.detach()[units]
    Vt20 = torch.linalg.svd(Eb - Eb.mean(0), full_matrices=False)[2][:20]
    in_span = W_dec @ Vt20.T @ Vt20  # the decoder row's part in the 20 main directions of the item table
    probes = {"sae_encoder_rows": torch.zeros_like(sae.W_dec).index_copy_(0, torch.from_numpy(units), W_enc),
              "sae_dec_item_span": torch.zeros_like(sae.W_dec).index_copy_(0, torch.from_numpy(units), in_span),
              "oracle_label_dir": torch.zeros_like(sae.W_dec).index_copy_(0, torch.from_numpy(units), oracle)}
    for name, D in probes.items():
        d, s = measure(name, ctx, rows, D, units, inactive, labels, concepts, a.random, a.seed + 1)
        doses.append(d), steers.append(s)
    dose, st = pd.concat(doses), pd.concat(steers)
    pd.set_option("display.width", 200, "display.max_columns", 30, "display.precision", 3)
    print("\nDose-response (medians over units; label_gain with its interquartile range; beta x median ||h_u||)")
    print(summarise(dose, st).to_string())

    cos = lambda A, B: F.cosine_similarity(A, B, dim=1)
    print("\nWhy (SAE units steered above):")
    print(f"  median cos(decoder row, encoder row)       {cos(W_dec, W_enc).median():.3f}")
    print(f"  median cos(decoder row, oracle label dir)  {cos(W_dec, oracle).median():.3f}")
    print(f"  median cos(encoder row, oracle label dir)  {cos(W_enc, oracle).median():.3f}")
    rand = F.normalize(torch.randn(1000, W_dec.shape[1], generator=torch.Generator().manual_seed(a.seed)), dim=1)
    print(f"  median |cos| of a random direction with an oracle dir  {cos(rand[:len(units)], oracle).abs().median():.3f}")
    Wall = sae.W_dec.detach()
    live = keep["sae"][4] > 0
    spec, gen = Wall[torch.from_numpy(live & (keep["sae"][4] <= DI.GENERIC_FREQ))], Wall[torch.from_numpy(keep["sae"][4] > DI.GENERIC_FREQ)]
    Ec = Eb - Eb.mean(0)
    Vt = torch.linalg.svd(Ec, full_matrices=False)[2]
    spread = lambda U: (Ec @ F.normalize(U, dim=1).T).std(0).median()
    print(f"  score spread per unit of norm, std_i(E_i . u): specific decoder rows {spread(spec):.3f}, generic "
          f"{spread(gen):.3f}, random {spread(rand):.3f}, oracle {spread(oracle):.3f}")
    for q in (5, 10, 20):
        sh = lambda U: ((F.normalize(U, dim=1) @ Vt[:q].T) ** 2).sum(1).median()
        print(f"  share of ||u||^2 in the top-{q} principal directions of the centred item table: specific "
              f"{sh(spec):.3f}, generic {sh(gen):.3f}, random {sh(rand):.3f}, oracle {sh(oracle):.3f}")
    zi, zv = ctx.z_idx, ctx.z_val
    dense = torch.from_numpy(keep["sae"][4] > DI.GENERIC_FREQ)
    gen = dense[zi] & (zv > 0)
    part = lambda msk: ((zv * msk)[:, :, None] * sae.W_dec.detach()[zi]).sum(1).norm(dim=1)
    hn = ctx.h.norm(dim=1)
    print(f"  generic latents: {int(dense.sum())}; hold {gen.float().sum(1).mean():.1f} of {zi.shape[1]} slots; "
          f"median ||generic part|| / ||h|| {(part(gen) / hn).median():.3f}, "
          f"||specific part|| / ||h|| {(part(~gen & (zv > 0)) / hn).median():.3f}, ||b_dec|| / median||h|| "
          f"{sae.b_dec.norm() / hn.median():.3f}")
    spec_act = zv[(~gen) & (zv > 0)]
    print(f"  specific latents' activation: median {spec_act.median():.2f} (beta = 1 is {ctx.h_norm:.1f})")
    En = Eb.norm(dim=1)
    pop = torch.as_tensor(ds.items.sort_values("item_id")["popularity"].to_numpy().copy(), dtype=torch.float64)
    from scipy.stats import spearmanr
    mean_dir = F.normalize(Eb.mean(0), dim=0)
    print(f"  item table: ||mean E|| / mean ||E_i|| {Eb.mean(0).norm() / En.mean():.3f}; "
          f"Spearman(||E_i||, popularity) {spearmanr(En.numpy(), pop.numpy())[0]:.3f}; "
          f"Spearman(E_i . mean dir, popularity) {spearmanr((Eb @ mean_dir).numpy(), pop.numpy())[0]:.3f}")
    Ec = Eb - Eb.mean(0)
    sv = torch.linalg.svdvals(Ec)
    print(f"  centred item table: top-1/top-5 singular directions hold {float(sv[0] ** 2 / (sv ** 2).sum()):.3f} / "
          f"{float((sv[:5] ** 2).sum() / (sv ** 2).sum()):.3f} of the variance")
    print(f"  median |cos(decoder row, mean item dir)| {cos(W_dec, mean_dir[None]).abs().median():.3f}, "
          f"random {cos(rand, mean_dir[None]).abs().median():.3f}")
    sst = st[st.dictionary == "sae"].set_index("unit")
    share_lab = labels[1:].mean(0)
    print(f"  Spearman(label gain at beta=1, label's catalogue share) "
          f"{spearmanr(sst.gain.to_numpy(), share_lab, nan_policy='omit')[0]:.3f}; "
          f"Spearman(gain, cos(decoder, oracle)) {spearmanr(sst.gain.to_numpy(), cos(W_dec, oracle).numpy(), nan_policy='omit')[0]:.3f}")

    ab = I.ablation(ctx, units, labels, concepts, max_rows=100, seed=a.seed)
    print(f"\nAblation of {len(ab)} SAE units where they fire (mean per instance, median over units; control = the "
          "active latent at the next activation rank on the same instance):")
    print(ab[["n", "concept_in", "concept_left", "concept_left_control", "label_in", "label_left",
              "label_left_control"]].median().to_string())
    flag = np.flatnonzero(ul_sae.popularity_flag)
    print(f"\nDe-biasing: scale the {len(flag)} popularity-flagged SAE latents (concepts' rule: |Spearman| >= "
          f"{DI.POP_FLAG_SPEARMAN} or popularity_pct beyond {DI.POP_FLAG_HIGH:.0f}/{100 - DI.POP_FLAG_HIGH:.0f}) on all "
          f"{len(h_te)} test instances")
    print(I.debias_curve(ctx, flag, item_pct, factors=(1.0, 0.5, 0.0, -0.5, -1.0)).to_string(index=False))
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
