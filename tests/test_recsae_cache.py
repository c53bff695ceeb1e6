"""Computed once, read back: SASRec's ranks and top-1 per split and an SAE's codes are cached in the run
folder keyed by what they depend on (`stages.sasrec_outputs`, `stages.sae_codes`)."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recsae_utils import fidelity, metrics, stages
from recsae_utils.data import Instances
from recsae_utils.sae import SAEConfig, TopKSAE, encode_sparse
from recsae_utils.train import rank_targets


def _ctx(seed: int = 0, n_items: int = 12, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    inst, h = {}, {}
    for s, n in (("train", 40), ("dev", 10), ("test", 12)):
        user = np.arange(n) % 6
        inst[s] = Instances(user, rng.integers(1, n_items, n), np.ones(n, int), np.zeros((n, 3), np.int64),
                            np.ones(n, int))
        h[s] = torch.randn(n, d, generator=g)
    known = [np.array(sorted({1 + u, 1 + (u + 3) % (n_items - 1)})) for u in range(6)]
    mask = (np.r_[0, np.cumsum([len(k) for k in known])], np.concatenate(known))
    emb = torch.nn.Embedding(n_items, d)
    torch.nn.init.normal_(emb.weight, generator=g)
    model = SimpleNamespace(item_table=lambda: emb.weight, sequential=True)   # what the stages read of a model (models.base)
    return stages.StageInputs(None, inst, model, h, mask, "sasrec-a", 0.0)


def test_sasrec_outputs_computed_once_and_keyed_by_checkpoint(tmp_path, monkeypatch):
    cfg, ctx = SimpleNamespace(run_dir=tmp_path), _ctx()
    E = ctx.model.item_table().detach()
    first = stages.sasrec_outputs(cfg, ctx, "test")
    scores = metrics.mask_known(ctx.h["test"] @ E.T, ctx.inst["test"].user, *ctx.mask)
    assert np.array_equal(first.ranks, rank_targets(E, ctx.h["test"], ctx.inst["test"], ctx.mask))
    assert np.array_equal(first.top1, scores.argmax(1).numpy())
    assert not np.isin(first.top1[ctx.inst["test"].user == 0], ctx.mask[1][:2]).any()  # known items masked

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(stages.inputs, "rank_targets", boom)
    again = stages.sasrec_outputs(cfg, ctx, "test")
    assert np.array_equal(again.ranks, first.ranks) and np.array_equal(again.top1, first.top1)
    ctx = dataclasses.replace(ctx, sasrec_key="sasrec-b")  # another checkpoint: computed again
    with pytest.raises(AssertionError, match="recomputed"):
        stages.sasrec_outputs(cfg, ctx, "test")


def test_score_blocks_give_the_same_results_as_one_matrix(tmp_path, monkeypatch):
    """SASRec's top-1 built block by block (what keeps 16x ML-1M in memory) equals that of the whole masked
    score matrix."""
    cfg, ctx = SimpleNamespace(run_dir=tmp_path), _ctx()
    E, h, inst = ctx.model.item_table().detach(), ctx.h["test"], ctx.inst["test"]
    a = metrics.mask_known(h @ E.T, inst.user, *ctx.mask)
    monkeypatch.setattr(stages.inputs, "SCORE_BLOCK", 2 * E.shape[0])  # two rows per block
    assert len(stages.score_blocks(len(inst), E.shape[0])) > 1
    assert np.array_equal(stages.sasrec_outputs(cfg, ctx, "test").top1, a.argmax(1).numpy())


def test_sae_codes_cached_per_part_and_keyed_by_weights(tmp_path, monkeypatch):
    cfg, ctx = SimpleNamespace(run_dir=tmp_path), _ctx()
    sae = TopKSAE(SAEConfig(d_in=8, n_latents=16, k=3, seed=1)).eval()
    codes = stages.sae_codes(cfg, ctx, sae, "x", ("train",))
    held = stages.sae_codes(cfg, ctx, sae, "x", ("held",))["held"]
    for got, want in ((codes["train"], encode_sparse(sae, ctx.h["train"])),
                      (held, encode_sparse(sae, torch.cat([ctx.h["dev"], ctx.h["test"]])))):
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    calls = []
    monkeypatch.setattr(stages.fit, "encode_sparse", lambda s, x: calls.append(len(x)) or encode_sparse(s, x))
    back = stages.sae_codes(cfg, ctx, sae, "x")
    assert calls == [] and np.array_equal(back["train"][0], codes["train"][0])
    with torch.no_grad():
        sae.b_enc += 0.01  # other weights, same config: encoded again
    stages.sae_codes(cfg, ctx, sae, "x", ("train",))
    assert calls == [40]
    with pytest.raises(ValueError, match="unknown part"):
        stages.sae_codes(cfg, ctx, sae, "x", ("dev",))


def test_rank_pass_equals_rank_targets_and_full_scores():
    """`rank_pass` gives rank_targets' ranks, and the top-k and catalog KL rows of the one full score matrix,
    also with a short last batch (here 3 rows) that is re-scored inside a full-size window."""
    ctx = _ctx()
    E = ctx.model.item_table().detach()
    inst, h = ctx.inst["train"], ctx.h["train"]                           # 40 instances: batches of 37 + 3
    ref_h = torch.randn(40, h.shape[1], generator=torch.Generator().manual_seed(1))
    ref = metrics.mask_known(ref_h @ E.T, inst.user, *ctx.mask)
    got = fidelity.rank_pass(E, h, inst, ctx.mask, k=4, ref_h=ref_h, batch_size=37)
    full = metrics.mask_known(h @ E.T, inst.user, *ctx.mask)
    assert np.array_equal(got.ranks, rank_targets(E, h, inst, ctx.mask, batch_size=37))
    assert torch.equal(got.top, full.topk(4, dim=1).indices)
    assert torch.equal(got.kl, metrics.catalog_kl_rows(ref, full))
    assert fidelity.rank_pass(E, h, inst, ctx.mask, k=None).top is None


def test_dictionary_sample_keeps_every_row_below_the_cap_and_one_sample_above_it(tmp_path):
    """Below `dict_rows` nothing changes (ML-1M and Grocery); above it, h_u, the instances and the train codes
    keep the same sorted rows, the same seed gives the same rows, and an SAE's cached train codes are keyed
    by the sample, so full-set codes written by stage 04 are never read as the sample's."""
    ctx = _ctx()
    sae = TopKSAE(SAEConfig(d_in=8, n_latents=16, k=3, seed=1)).eval()
    acts = {"train": encode_sparse(sae, ctx.h["train"]), "dev": encode_sparse(sae, ctx.h["dev"])}
    same = stages.dictionary_sample(SimpleNamespace(dict_rows=40, seed=0), ctx, acts)
    assert same[0] is ctx and same[1] is acts
    assert stages.dictionary_sample(SimpleNamespace(dict_rows=0, seed=0), ctx, acts)[0] is ctx

    cfg = SimpleNamespace(dict_rows=15, seed=0, run_dir=tmp_path)
    full = stages.sae_codes(cfg, ctx, sae, "x", ("train",))["train"]          # what stage 04 caches
    small, sacts = stages.dictionary_sample(cfg, ctx, acts)
    rows = small.train_rows
    assert len(rows) == 15 and np.all(np.diff(rows) > 0)
    assert torch.equal(small.h["train"], ctx.h["train"][rows]) and small.h["test"] is ctx.h["test"]
    assert np.array_equal(small.inst["train"].item, ctx.inst["train"].item[rows])
    assert np.array_equal(sacts["train"][0], acts["train"][0][rows]) and sacts["dev"] is acts["dev"]
    assert np.array_equal(stages.dictionary_sample(cfg, ctx, acts)[0].train_rows, rows)
    assert not np.array_equal(stages.dictionary_sample(SimpleNamespace(dict_rows=15, seed=1), ctx, acts)[0].train_rows,
                              rows)
    got = stages.sae_codes(cfg, small, sae, "x", ("train",))["train"]
    assert got[0].shape[0] == 15 and np.array_equal(got[0], full[0][rows]) and np.array_equal(got[1], full[1][rows])


def test_activation_tables_round_trip_without_python_objects(tmp_path):
    """Stage 03's activation parquet gives back the codes sorted by value per row, the keys, and reads a
    plain list column (pandas' own writing) the same way."""
    import pandas as pd

    ctx = _ctx()
    sae = TopKSAE(SAEConfig(d_in=8, n_latents=16, k=3, seed=1)).eval()
    cfg = SimpleNamespace(run_dir=tmp_path)
    paths = stages.write_activations(cfg, ctx, sae)
    idx, val, keys = stages.load_activations(paths["train"])
    want_i, want_v = encode_sparse(sae, ctx.h["train"])
    order = np.argsort(-want_v, axis=1, kind="stable")
    assert idx.dtype == np.int32 and val.dtype == np.float32 and idx.shape == (40, 3)
    assert np.array_equal(idx, np.take_along_axis(want_i, order, 1))
    assert np.array_equal(val, np.take_along_axis(want_v, order, 1)) and np.all(np.diff(val, axis=1) <= 0)
    assert list(keys.columns) == ["instance", "user_id", "position", "item_id"]
    assert np.array_equal(keys.item_id.to_numpy(), ctx.inst["train"].item)
    pd.DataFrame({"instance": np.arange(40), "latents": list(idx), "values": list(val)}).to_parquet(tmp_path / "old.parquet")
    back = stages.load_activations(tmp_path / "old.parquet")
    assert np.array_equal(back[0], idx) and np.array_equal(back[1], val)


def test_open_names_the_fits_it_cannot_load_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path))
    monkeypatch.setattr(stages.notebook, "stage_inputs", lambda cfg: pytest.fail("no stage inputs for a bad request"))
    with pytest.raises(ValueError, match=r"unknown SAE fit\(s\) \['nope'\]: this run fits \['main', 'alt'\]"):
        stages.open("ml-1m", "tiny", fits=("main", "nope"))
    with pytest.raises(ValueError, match="include 'main'"):
        stages.open("ml-1m", "tiny", fits=("alt",), sample=True)


def test_open_loads_the_fits_asked_for_and_the_sample(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path))
    ctx = _ctx()
    sae = TopKSAE(SAEConfig(d_in=8, n_latents=16, k=2))
    calls = []
    monkeypatch.setattr(stages.notebook, "stage_inputs", lambda cfg: ctx)
    monkeypatch.setattr(stages.notebook, "fit_stage", lambda cfg, c, m, k, v: calls.append((m, k, v)) or
                        SimpleNamespace(sae=sae))
    monkeypatch.setattr(stages.notebook, "activation_arrays",
                        lambda cfg, c, s: {"train": encode_sparse(s, c.h["train"])})
    run = stages.open("ml-1m", "tiny", fits=("main",), sample=True)
    plan = stages.fit_plan(run.cfg)
    assert calls == [plan["main"]] and run.sae is sae and run.saes == {"main": sae} and run.ctx is ctx
    assert np.array_equal(run.acts["train"][0], encode_sparse(sae, ctx.h["train"])[0])   # 40 rows <= dict_rows: all
    assert list(stages.open("ml-1m", "tiny").fits) == list(plan) and stages.open("ml-1m", "tiny", fits=()).fits == {}


def test_a_general_model_is_fitted_and_described_with_each_user_once():
    """BPRMF and LightGCN give every instance of a user the user's one vector: the SAE fit sees each user's
    vector equally often (tiled to about the instance count) and the concept dictionaries hold one row per
    user, their last training instance; a sequential model's fit and dictionaries keep every instance."""
    user = np.array([0, 0, 0, 0, 1, 2, 2])             # user 0 has 4 training instances, user 1 one, user 2 two
    position = np.array([1, 2, 4, 3, 1, 2, 1])          # not in order: the last instance is the highest position
    inst = Instances(user, np.arange(1, 8), position, np.arange(21).reshape(7, 3), np.ones(7, int))
    vec = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    h = {"train": vec[user], "dev": vec[:1], "test": vec[:1]}
    one = {"train": inst, "dev": inst.subset([0]), "test": inst.subset([0])}
    general = stages.StageInputs(None, one, SimpleNamespace(sequential=False), h, None, "k", 0.0)
    sequential = dataclasses.replace(general, model=SimpleNamespace(sequential=True))
    assert stages.user_rows(inst).tolist() == [2, 4, 5]

    x = stages.fit.fit_rows(general)                    # 7 instances / 3 users: each user's vector twice
    assert len(x) == 6 and all(int((x == v).all(1).sum()) == 2 for v in vec)
    assert stages.fit.fit_rows(sequential) is h["train"]

    acts = {"train": (np.arange(7)[:, None], np.ones((7, 1), np.float32))}
    small, sacts = stages.dictionary_sample(SimpleNamespace(dict_rows=0, seed=0), general, acts)
    assert small.train_rows.tolist() == [2, 4, 5] and small.inst["train"].position.tolist() == [4, 1, 2]
    assert torch.equal(small.h["train"], vec) and sacts["train"][0][:, 0].tolist() == [2, 4, 5]
    capped = stages.dictionary_sample(SimpleNamespace(dict_rows=2, seed=0), general, acts)[0].train_rows
    assert len(capped) == 2 and set(capped) < {2, 4, 5}   # the cap then samples users
    assert stages.dictionary_sample(SimpleNamespace(dict_rows=0, seed=0), sequential, acts)[0] is sequential
