"""SASRec: the fast last-slot path equals the general transformer, training learns a planted sequential
pattern, is deterministic for a seed, and resumes exactly after an interruption."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsae_utils import artifacts, checkpoints, data, train
from recsae_utils.model import SASRec, SASRecConfig


@pytest.mark.parametrize("heads", [1, 2])
def test_fast_path_equals_general_path(heads):
    torch.manual_seed(0)
    m = SASRec(SASRecConfig(n_items=30, d_model=16, n_heads=heads, history_max=6, init_std=0.3))
    hist = torch.randint(1, 30, (50, 6))
    length = torch.randint(1, 7, (50,))
    hist[torch.arange(6)[None] >= length[:, None]] = 0
    assert torch.allclose(m.user_repr(hist), m.states(hist)[:, 0], atol=1e-5)


def test_reference_init_and_positions():
    m = SASRec(SASRecConfig(n_items=3126))
    w = m.item_emb.weight.detach()
    assert abs(float(w.std()) - 0.01) < 0.001  # N(0, 0.01)
    assert torch.all(m.blocks[0].ln1.weight == 1)  # LayerNorm keeps the PyTorch default
    assert m.pos_emb.weight.shape[0] == 21 and not hasattr(m.blocks[0], "out_proj")


def test_early_stop_rule():
    assert not checkpoints.early_stop_now([0.1, 0.2, 0.3], patience=2)
    assert checkpoints.early_stop_now([0.3, 0.2, 0.2, 0.1], patience=2)  # last values non-increasing
    assert checkpoints.early_stop_now([0.3, 0.2, 0.25, 0.29], patience=2)  # best is more than 2 epochs old
    assert not checkpoints.early_stop_now([0.3, 0.2, 0.25, 0.31], patience=2)


def test_negatives_avoid_train_items(tiny_ds, tiny_inst):
    indptr, known = data.user_item_csr(tiny_ds, ("train",))
    users = tiny_inst["train"].user
    neg = train.sample_negatives(users, tiny_ds.n_items, indptr, known, np.random.default_rng(0))
    assert neg.min() >= 1 and neg.max() < tiny_ds.n_items
    for u, n in zip(users[:300], neg[:300]):
        assert n not in set(known[indptr[u]:indptr[u + 1]])


CFG = train.TrainConfig(lr=3e-3, batch_size=64, max_epochs=6, early_stop=6, seed=0, device="cpu")


def test_learns_planted_pattern_and_is_deterministic(tiny_ds, tiny_inst):
    mask = data.user_item_csr(tiny_ds)
    untrained = train.evaluate(SASRec(SASRecConfig(n_items=tiny_ds.n_items)), tiny_inst["test"], mask)
    a = train.train_sasrec(tiny_ds, tiny_inst, CFG, progress=False)
    b = train.train_sasrec(tiny_ds, tiny_inst, CFG, progress=False)
    ma, mb = (train.evaluate(r.model, tiny_inst["test"], mask) for r in (a, b))
    assert ma == mb  # same seed, same numbers
    # the planted "next movie" pattern: random ranking gives HR@5 ~ 5/40; the trained model is far above
    assert ma["HR@5"] > 0.5 and ma["HR@5"] > untrained["HR@5"] + 0.3
    c = train.train_sasrec(tiny_ds, tiny_inst, train.TrainConfig(**{**CFG.to_dict(), "seed": 1}), progress=False)
    assert not torch.equal(c.model.item_emb.weight, a.model.item_emb.weight)


def test_resume_gives_identical_result(tmp_path, tiny_ds, tiny_inst):
    full = train.train_sasrec(tiny_ds, tiny_inst, CFG, out_dir=tmp_path / "full", progress=False)
    out = tmp_path / "resumed"
    short = train.TrainConfig(**{**CFG.to_dict(), "max_epochs": 3})
    train.train_sasrec(tiny_ds, tiny_inst, short, out_dir=out, progress=False)
    # pretend the run was killed after epoch 3: rewrite its state with the full config and continue
    tensors, meta = artifacts.load_weights(out / "sasrec_last.safetensors")
    meta["train"] = CFG.to_dict()
    artifacts.save_weights(out / "sasrec_last.safetensors", tensors, meta)
    resumed = train.train_sasrec(tiny_ds, tiny_inst, CFG, out_dir=out, progress=False)
    assert len(resumed.history) == len(full.history) and resumed.best_epoch == full.best_epoch
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    loaded = train.load_sasrec(out / "sasrec.safetensors")
    assert torch.equal(loaded.item_emb.weight, resumed.model.item_emb.weight)


def test_user_vectors_batches(tiny_ds, tiny_inst):
    m = SASRec(SASRecConfig(n_items=tiny_ds.n_items))
    h1 = train.user_vectors(m, tiny_inst["train"], batch_size=7)
    h2 = train.user_vectors(m, tiny_inst["train"], batch_size=10_000)
    assert h1.shape == (len(tiny_inst["train"]), 64) and torch.allclose(h1, h2, atol=1e-6)


def _reference_losses(ds, inst, cfg: train.TrainConfig, epochs: int) -> tuple[list[float], SASRec]:
    """The training loop as it was before the speed work: per-batch gathers through the permutation,
    eager `bpr_loss`, torch's own thread count. Per-epoch mean losses and the trained model."""
    train.seed_everything(cfg.seed)
    model = SASRec(SASRecConfig(n_items=ds.n_items))
    opt = train.make_optimizer(model, cfg)
    tr, csr = inst["train"], data.user_item_csr(ds, ("train",))
    hist_all, tgt_all = torch.from_numpy(tr.hist), torch.from_numpy(tr.item)
    losses = []
    for epoch in range(1, epochs + 1):
        rng = np.random.default_rng([cfg.seed, epoch])
        neg_all = torch.from_numpy(train.sample_negatives(tr.user, ds.n_items, *csr, rng))
        perm = torch.from_numpy(rng.permutation(len(tr)))
        total, n_batches = 0.0, 0
        for s in range(0, len(tr), cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            loss = train.bpr_loss(model, hist_all[idx], tgt_all[idx], neg_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n_batches = total + loss.item(), n_batches + 1
        losses.append(total / n_batches)
    return losses, model


@pytest.mark.parametrize("compile_", ["off", "on"])
def test_fast_training_matches_reference_loop(tiny_ds, tiny_inst, compile_):
    """The default (eager) and compiled batch paths give the old loop's losses and weights to float
    tolerance, and the same numbers again for the same seed."""
    cfg = train.TrainConfig(**{**CFG.to_dict(), "max_epochs": 2, "compile": compile_})
    threads = torch.get_num_threads()
    ref_losses, ref = _reference_losses(tiny_ds, tiny_inst, cfg, 2)
    a = train.train_sasrec(tiny_ds, tiny_inst, cfg, progress=False)
    b = train.train_sasrec(tiny_ds, tiny_inst, cfg, progress=False)
    losses = [row["loss"] for row in a.history]
    assert np.allclose(losses, ref_losses, rtol=1e-5, atol=0) and ref_losses[1] < ref_losses[0]
    assert losses == [row["loss"] for row in b.history]  # seeded: same numbers
    for k, v in ref.state_dict().items():
        assert torch.allclose(a.model.state_dict()[k], v, atol=1e-5), k
        assert torch.equal(a.model.state_dict()[k], b.model.state_dict()[k]), k
    assert torch.get_num_threads() == threads  # the training's thread setting does not leak
    if compile_ == "on":  # compiling works here, so the compiled path was the one tested
        hist = torch.from_numpy(tiny_inst["train"].hist[:8])
        assert train.compiled_loss(a.model, (hist, hist[:, 0], hist[:, 1])) is not train.bpr_loss


def test_run_only_fields_stay_out_of_the_config_key():
    """compile/threads choose how batches run, not what is computed: existing checkpoints stay valid."""
    a, b = train.TrainConfig(), train.TrainConfig(compile="off", threads=2)
    assert a.to_dict() == b.to_dict() and "compile" not in a.to_dict()
    with pytest.raises(ValueError, match="compile"):
        train.TrainConfig(compile="yes")


def test_a_diverged_training_stops_naming_the_epoch_and_the_setting(tmp_path, tiny_ds, tiny_inst):
    """RECSAE_LR=1e6 used to train on with loss nan, report dev NDCG@5 1.0000 and save the epoch."""
    cfg = train.TrainConfig(**{**CFG.to_dict(), "lr": 1e6})
    with pytest.raises(checkpoints.TrainingDiverged, match=r"SASRec \(seed 0\) diverged at epoch 1: .*loss is nan.*RECSAE_LR=1e\+06"):
        train.train_sasrec(tiny_ds, tiny_inst, cfg, out_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob("*.safetensors"))                         # nothing of the diverged epoch kept


def test_a_data_edit_that_keeps_the_split_sizes_trains_again(tmp_path, tiny_ds, tiny_inst, monkeypatch):
    """run_seeds keyed its finished model on the config and the split counts, and the resume point on the
    config alone: swapping two movies in one user's lines left a byte-identical, stale SASRec (issue 20)."""
    from recsae_utils import config, stages

    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path / "a"))
    cfg = config.load("ml-1m", "tiny", seeds="0", max_epochs=2)
    train.run_seeds(cfg, tiny_ds, tiny_inst, progress=False)
    ckpt = cfg.run_dir / "sasrec" / "seed0" / "sasrec.safetensors"
    before = ckpt.read_bytes()
    tr = tiny_ds.train.copy()
    u = tr.user_id.iloc[0]
    rows = np.flatnonzero(tr.user_id.to_numpy() == u)[:2]
    tr.loc[rows, "item_id"] = tr.loc[rows[::-1], "item_id"].to_numpy()       # same sizes, other sequence
    edited = data.Dataset(tiny_ds.name, tr, tiny_ds.dev, tiny_ds.test, tiny_ds.items, dict(tiny_ds.manifest))
    assert edited.counts() == tiny_ds.counts() and data.content_hash(edited) != data.content_hash(tiny_ds)
    inst = data.build_instances(edited)
    assert stages.sasrec_key(ckpt, edited) != stages.sasrec_key(ckpt, tiny_ds)   # h_u caches follow the data too
    rerun = train.run_seeds(cfg, edited, inst, progress=False)[0]["model"]
    assert ckpt.read_bytes() != before
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path / "fresh"))
    fresh = train.run_seeds(config.load("ml-1m", "tiny", seeds="0", max_epochs=2), edited, inst, progress=False)[0]
    for k, v in fresh["model"].state_dict().items():                          # exactly a fresh run's model
        assert torch.equal(v, rerun.state_dict()[k]), k


def test_a_damaged_checkpoint_names_its_file_and_is_trained_again(tmp_path, tiny_ds, tiny_inst, monkeypatch):
    """A truncated checkpoint gave safetensors' 'incomplete metadata' with no file name, and a rerun failed
    on it again."""
    from recsae_utils import config

    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path))
    cfg = config.load("ml-1m", "tiny", seeds="0", max_epochs=2)
    good = train.run_seeds(cfg, tiny_ds, tiny_inst, progress=False)[0]
    ckpt = cfg.run_dir / "sasrec" / "seed0" / "sasrec.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:20])
    with pytest.raises(artifacts.CheckpointError, match=f"{ckpt}: unreadable checkpoint"):
        train.load_sasrec(ckpt)
    again = train.run_seeds(cfg, tiny_ds, tiny_inst, progress=False)[0]
    assert again["test"] == good["test"] and train.load_sasrec(ckpt) is not None
