"""The base-model interface and the models behind it (GRU4Rec, BPRMF, LightGCN; SASRec in test_sasrec.py): each
forward pass equals a direct computation on a hand-made batch, training learns a planted pattern, a run
resumes and reloads exactly, and the interface's h and E give the model's own scores."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsae_utils import config, data, models, train
from recsae_utils.models.lightgcn import normalized_adjacency, train_pairs


def gru_by_hand(m: models.GRU4Rec, items: list[int]) -> torch.Tensor:
    """GRU4Rec's h for one chronological history, the GRU's gate equations written out."""
    H = m.cfg.hidden_size
    W_i, W_h, b_i, b_h = (getattr(m.rnn, f"{n}_l0").detach() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    h = torch.zeros(H, dtype=torch.float64)
    for it in items:
        x = m.item_emb.weight[it].detach().double()
        gi, gh = W_i.double() @ x + b_i.double(), W_h.double() @ h + b_h.double()
        r = torch.sigmoid(gi[:H] + gh[:H])
        z = torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
        n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
        h = (1 - z) * n + z * h
    return (m.out.weight.detach().double() @ h + m.out.bias.detach().double()).float()


@pytest.mark.parametrize("pack_below", [0.0, 1.0], ids=["padded", "packed"])
def test_gru4rec_reads_the_history_oldest_first_and_ignores_padding(monkeypatch, pack_below):
    """Both ways of running the GRU (over every slot, or packed to each row's length) give the hand-computed h."""
    monkeypatch.setattr(models.gru4rec, "PACK_BELOW", pack_below)
    torch.manual_seed(0)
    m = models.GRU4Rec(models.GRU4RecConfig(n_items=12, d_model=6, hidden_size=5, history_max=4, init_std=0.5))
    hist = torch.tensor([[3, 7, 2, 9], [5, 0, 0, 0], [4, 4, 11, 0]])   # most recent first, 0 = padding
    h = m.user_repr(hist)
    for row, chrono in zip(h, ([9, 2, 7, 3], [5], [11, 4, 4])):
        torch.testing.assert_close(row, gru_by_hand(m, chrono), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        m.item_emb.weight[0] += 10.0                                   # the padding row never enters the state
    torch.testing.assert_close(m.user_repr(hist), h, rtol=0, atol=0)
    assert m.out.bias.abs().max() > 0 and abs(float(m.item_emb.weight[1:].detach().std()) - 0.5) < 0.2   # N(0, init_std)


def test_bprmf_is_a_user_row_dot_an_item_row():
    torch.manual_seed(0)
    m = models.BPRMF(models.BPRMFConfig(n_users=4, n_items=5, d_model=3))
    users = torch.tensor([1, 3, 3])
    assert torch.equal(m.user_repr(users), m.user_emb.weight[users])
    want = torch.stack([(m.user_emb.weight[u] * m.item_emb.weight[[p, q]]).sum(-1) for u, p, q in ((1, 2, 4), (3, 1, 2), (3, 4, 4))])
    torch.testing.assert_close(m.pair_scores(users, torch.tensor([2, 1, 4]), torch.tensor([4, 2, 4])), want)


def test_lightgcn_equals_dense_propagation():
    """Users 1, 2 and items 1..3 (row 0 of each = padding): u1-i1, u1-i2, u2-i2, u2-i3, with u1-i1 repeated."""
    indptr, items = np.array([0, 0, 3, 5]), np.array([1, 2, 1, 2, 3])
    cfg = models.LightGCNConfig(n_users=3, n_items=4, n_edges=4, d_model=2, n_layers=3)
    torch.manual_seed(0)
    m = models.LightGCN(cfg, (indptr, items))
    A = np.zeros((7, 7))
    for u, i in ((1, 1), (1, 2), (2, 2), (2, 3)):
        A[u, 3 + i] = A[3 + i, u] = 1.0
    d = (A.sum(1) + 1e-10) ** -0.5
    L = d[:, None] * A * d[None, :]
    X = np.concatenate([m.user_emb.detach().numpy(), m.item_emb.detach().numpy()]).astype(np.float64)
    out = (X + L @ X + L @ L @ X + L @ L @ L @ X) / 4
    torch.testing.assert_close(m.user_repr(torch.arange(3)), torch.from_numpy(out[:3]).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.item_table(), torch.from_numpy(out[3:]).float(), rtol=1e-5, atol=1e-6)
    assert np.allclose(m.adj.to_dense().numpy(), L, atol=1e-6)
    W = torch.randn(7, 2)                                               # gradients through the sparse products
    (torch.cat([m.user_repr(torch.arange(3)), m.item_table()]) * W).sum().backward()
    X = torch.cat([m.user_emb, m.item_emb]).detach().requires_grad_(True)
    Ld = torch.from_numpy(L).float()
    ((X + Ld @ X + Ld @ Ld @ X + Ld @ Ld @ Ld @ X) / 4 * W).sum().backward()
    torch.testing.assert_close(torch.cat([m.user_emb.grad, m.item_emb.grad]), X.grad, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="other data"):                 # a checkpoint meets another graph
        models.LightGCN(cfg, (np.array([0, 0, 1, 2]), np.array([1, 2])))


def test_lightgcn_caches_the_propagation_only_while_the_weights_stay():
    m = models.LightGCN(models.LightGCNConfig(n_users=3, n_items=4, n_edges=2, d_model=2), (np.array([0, 0, 1, 2]), np.array([1, 2])))
    with torch.no_grad():
        a, out = m.item_table(), m.propagated()
        assert m.propagated() is out and m.item_table().data_ptr() == a.data_ptr()  # many batches propagate once
        m.item_emb.add_(1.0)                                                # an optimiser step: a new version
        assert not torch.equal(m.item_table(), a)
    assert m.item_table().requires_grad                                     # training never reads the cache


def sequences(n: int = 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    hist = torch.randint(1, 20, (n, 5), generator=g)
    hist[torch.arange(5)[None] >= torch.randint(1, 6, (n,), generator=g)[:, None]] = 0
    return hist


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bprmf", "lightgcn"])
def test_the_interface_gives_the_models_own_scores(name):
    """h · Eᵀ from user_repr and item_table equals the scores the model trains on (pair_scores), and the
    instances of a general model carry their user's vector."""
    torch.manual_seed(0)
    graph = (np.r_[0, np.cumsum(np.full(8, 2))], np.arange(16) % 19 + 1)
    cfg = {"sasrec": models.SASRecConfig(n_items=20, d_model=8, history_max=5, init_std=0.3),
           "gru4rec": models.GRU4RecConfig(n_items=20, d_model=8, hidden_size=6, history_max=5, init_std=0.3),
           "bprmf": models.BPRMFConfig(n_users=8, n_items=20, d_model=8, init_std=0.3),
           "lightgcn": models.LightGCNConfig(n_users=8, n_items=20, n_edges=16, d_model=8)}[name]
    m = models.LightGCN(cfg, graph) if name == "lightgcn" else models.build(cfg)
    hist = sequences()
    users = torch.arange(30) % 7 + 1
    inst = data.Instances(users.numpy(), np.ones(30, np.int64), np.ones(30, np.int64), hist.numpy(), (hist > 0).sum(1).numpy())
    x = torch.from_numpy(m.instance_inputs(inst))
    assert torch.equal(x, hist if m.sequential else users)
    pos, neg = torch.randint(1, 20, (30,)), torch.randint(1, 20, (30,))
    with torch.no_grad():
        full = m.scores(m.user_repr(x))
        torch.testing.assert_close(full, m.user_repr(x) @ m.item_table().T, rtol=0, atol=0)
        own = m.pair_scores(x, pos, neg)
    torch.testing.assert_close(full.gather(1, torch.stack([pos, neg], 1)), own, rtol=1e-5, atol=1e-6)
    h = train.user_vectors(m, inst, batch_size=7)
    torch.testing.assert_close(h, train.user_vectors(m, inst, batch_size=100), rtol=1e-6, atol=1e-7)  # batches agree
    assert h.shape == (30, m.dim)
    if not m.sequential:                                                    # one vector per user
        assert torch.equal(h[0], h[7]) and torch.equal(h[0], m.user_repr(torch.tensor([1]))[0].detach())


def clustered_dataset(n_users: int = 60, n_groups: int = 3, group: int = 10, seen: int = 6) -> data.Dataset:
    """Planted user clusters: user u likes only group u % n_groups of items; train = `seen` of them, then one
    dev and one test item of the same group, never seen before."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, n_users + 1):
        g = u % n_groups
        items = g * group + 1 + rng.permutation(group)[:seen + 2]
        rows += [(u, int(i), t, "train" if t < seen else ("dev" if t == seen else "test")) for t, i in enumerate(items)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "time", "split"])
    part = {s: df[df.split == s].drop(columns="split").reset_index(drop=True) for s in ("train", "dev", "test")}
    n_items = n_groups * group + 1
    items = pd.DataFrame({"item_id": np.arange(1, n_items),
                          "popularity": np.bincount(part["train"].item_id, minlength=n_items)[1:]})
    return data.Dataset("clusters", part["train"], part["dev"], part["test"], items)


@pytest.mark.parametrize("name,lr", [("bprmf", 1e-2), ("lightgcn", 1e-2)])
def test_general_models_learn_planted_user_clusters(name, lr):
    """Random ranking puts the test item in the top 5 of the 24 unseen items about 21% of the time; a model
    that found the clusters ranks it among its group's 3 unseen items. (Untrained LightGCN is already far
    above random: propagating random vectors over the graph alone pulls a cluster's items together.)"""
    ds = clustered_dataset()
    inst = data.build_instances(ds)
    mask = data.user_item_csr(ds)
    torch.manual_seed(0)
    before = train.evaluate(models.build(models.model_config(name, ds), ds), inst["test"], mask)
    cfg = train.TrainConfig(lr=lr, batch_size=32, max_epochs=30, early_stop=30, seed=0, device="cpu")
    r = train.train_model(ds, inst, cfg, models.model_config(name, ds), progress=False)
    after = train.evaluate(r.model, inst["test"], mask)
    assert after["HR@5"] > 0.95 and after["NDCG@5"] > before["NDCG@5"] + 0.1, (before, after)


def test_gru4rec_learns_the_planted_next_item(tiny_ds, tiny_inst):
    """The tiny data's planted pattern (one movie always follows another), as test_sasrec checks for SASRec."""
    mask = data.user_item_csr(tiny_ds)
    mc = models.model_config("gru4rec", tiny_ds)
    torch.manual_seed(0)
    before = train.evaluate(models.build(mc), tiny_inst["test"], mask)
    cfg = train.TrainConfig(lr=3e-3, batch_size=64, max_epochs=6, early_stop=6, seed=0, device="cpu")
    after = train.evaluate(train.train_model(tiny_ds, tiny_inst, cfg, mc, progress=False).model, tiny_inst["test"], mask)
    assert after["HR@5"] > 0.5 and after["HR@5"] > before["HR@5"] + 0.3, (before, after)


@pytest.mark.parametrize("name", ["gru4rec", "bprmf", "lightgcn"])
def test_resume_and_reload_are_exact(name, tmp_path, tiny_ds, tiny_inst):
    """Stopped after 2 epochs and resumed to 4: the same weights and history as 4 epochs in one go; the saved
    best checkpoint loads back to the returned model."""
    mc = models.model_config(name, tiny_ds)
    cfg = train.TrainConfig(lr=3e-3, batch_size=64, max_epochs=4, early_stop=4, seed=0, device="cpu")
    full = train.train_model(tiny_ds, tiny_inst, cfg, mc, out_dir=tmp_path / "full", progress=False)
    out = tmp_path / "cut"
    train.train_model(tiny_ds, tiny_inst, train.TrainConfig(**{**cfg.to_dict(), "max_epochs": 2}), mc, out_dir=out,
                      progress=False)
    resumed = train.train_model(tiny_ds, tiny_inst, cfg, mc, out_dir=out, progress=False)
    drop = lambda hist: [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in hist]
    assert drop(resumed.history) == drop(full.history) and resumed.best_epoch == full.best_epoch
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    loaded = models.load(out / f"{name}.safetensors", tiny_ds)
    assert type(loaded) is type(full.model) and not loaded.training
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, full.model.state_dict()[k]), k
    mask = data.user_item_csr(tiny_ds)
    assert train.evaluate(loaded, tiny_inst["test"], mask) == train.evaluate(full.model, tiny_inst["test"], mask)


def test_the_model_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path))
    sas = config.load("ml-1m", "tiny")
    assert sas.model == "sasrec" and (sas.lr, sas.l2) == (1e-4, 1e-6) and sas.run_dir == tmp_path / "ml-1m"
    monkeypatch.setenv("RECSAE_MODEL", "lightgcn")
    lg = config.load("ml-1m", "tiny")
    assert (lg.model, lg.lr, lg.l2) == ("lightgcn", 1e-3, 1e-8)          # ReChorus's run-script settings
    assert lg.run_dir == tmp_path / "ml-1m" / "lightgcn" and lg.report_dir.parts[-2:] == ("ml-1m", "lightgcn")
    assert config.load("ml-1m", "tiny", lr=5e-4).lr == 5e-4                # a setting given wins
    assert config.load("ml-1m", "tiny", model="gru4rec").l2 == 1e-4
    monkeypatch.setenv("RECSAE_MODEL", "gru4recc")
    with pytest.raises(config.ConfigError, match=r"RECSAE_MODEL='gru4recc': unknown model; choose one of sasrec, gru4rec"):
        config.load("ml-1m", "tiny")
    assert config.MODELS == tuple(models.MODELS) and set(config.MODEL_DEFAULTS) == set(models.MODELS)


def test_run_seeds_keeps_each_model_in_its_folder(monkeypatch, tmp_path, tiny_ds, tiny_inst):
    monkeypatch.setenv("RECSAE_RUN_ROOT", str(tmp_path))
    cfg = config.load("ml-1m", "tiny", model="bprmf", max_epochs=2)
    first = train.run_seeds(cfg, tiny_ds, tiny_inst, progress=False)[0]
    ckpt = tmp_path / "ml-1m" / "bprmf" / "bprmf" / "seed0" / "bprmf.safetensors"
    assert train.checkpoint_path(cfg, 0) == ckpt and ckpt.exists()
    assert isinstance(first["model"], models.BPRMF) and not (tmp_path / "ml-1m" / "sasrec").exists()
    again = train.run_seeds(cfg, tiny_ds, tiny_inst, progress=False)[0]     # finished: reused, not retrained
    assert again["test"] == first["test"] and again["seconds"] == first["seconds"]


def test_config_display_names_match_the_models_own():
    """Reports name a model through config.MODEL_LABELS (no import of the models package, so no stage depends
    on d_model through its report code); it must say what each model class says of itself."""
    from recsae_utils import config
    assert config.MODEL_LABELS == {n: models.label(n) for n in config.MODELS}
