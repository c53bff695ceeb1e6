"""TopK SAE: known-answer tests on planted data, the custom sparse autograd, the two variants, resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsae_utils import sae as S
from recsae_utils.metrics import firing_stats, reconstruction_metrics


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny problems: a second intra-op thread only adds scheduling waits (the CI box has 2 busy cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def planted(n=20_000, d=16, n_atoms=64, active=3, seed=0):
    """x = sum of `active` unit-norm atoms of a planted dictionary with positive coefficients."""
    g = torch.Generator().manual_seed(seed)
    D = F.normalize(torch.randn(n_atoms, d, generator=g), dim=1)
    idx = torch.rand(n, n_atoms, generator=g).topk(active, dim=1).indices
    coef = torch.zeros(n, n_atoms).scatter_(1, idx, 0.5 + torch.rand(n, active, generator=g))
    return coef @ D, D


def small_cfg(**kw) -> S.SAEConfig:
    """The tests' SAE: small, constant lr, ReLU'd AuxK and the reference's weight decay (not the run's
    defaults: these tests were written for, and pin, those settings)."""
    base = dict(d_in=16, n_latents=128, k=3, k_aux=8, batch_size=256, lr=3e-3, epochs=2, dead_window=5_000,
                aux_relu=True, l2=1e-6, lr_decay=0.0)
    return S.SAEConfig(**{**base, **kw})


def same_weights(a: S.TopKSAE, b: S.TopKSAE) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------------
# 1. the planted dictionary is recovered


def test_planted_dictionary_is_recovered():
    x, D = planted()
    res = S.fit_sae(x, small_cfg(epochs=8), progress=False)
    cos = F.normalize(D, dim=1) @ F.normalize(res.sae.W_dec.detach(), dim=1).T  # (atoms, latents)
    recovered = (cos.max(1).values >= 0.9).float().mean().item()
    assert recovered >= 0.8, recovered
    assert reconstruction_metrics(x, S.reconstruct(res.sae, x))["explained_variance"] > 0.8


# ---------------------------------------------------------------------------------------------------
# 2. FVU / explained variance edge cases


def test_explained_variance_known_answers():
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0)) * 3 + 1
    mean = x.mean(0, keepdim=True).expand_as(x)
    assert reconstruction_metrics(x, mean)["explained_variance"] == pytest.approx(0.0, abs=1e-12)
    assert reconstruction_metrics(x, x)["explained_variance"] == 1.0
    assert S.fvu_loss(x, mean).item() == pytest.approx(1.0, abs=1e-6)
    assert S.fvu_loss(x, x).item() == 0.0
    x_hat = x + torch.randn_like(x)
    assert S.fvu_loss(x.double(), x_hat.double()).item() == pytest.approx(reconstruction_metrics(x, x_hat)["fvu"])


# ---------------------------------------------------------------------------------------------------
# 3. decoder geometry (openai variant)


def test_decoder_rows_unit_norm_after_training_openai():
    x, _ = planted(n=4_000)
    sae = S.fit_sae(x, small_cfg(epochs=2, lr=1e-2), progress=False).sae
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-5)


def test_project_decoder_grad_removes_parallel_component():
    sae = S.TopKSAE(small_cfg())
    g = torch.randn_like(sae.W_dec)
    sae.W_dec.grad = g.clone()
    sae.project_decoder_grad_()
    w = sae.W_dec.detach()
    assert (sae.W_dec.grad * w).sum(1).abs().max() < 1e-5                         # orthogonal to each row
    assert torch.allclose(sae.W_dec.grad, g - (g * w).sum(1, keepdim=True) * w, atol=1e-6)
    sae.W_dec.grad = 2.5 * w.clone()                                              # purely parallel: nothing left
    sae.project_decoder_grad_()
    assert sae.W_dec.grad.abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------------
# 4. AuxK revives dead latents


def _dead_after_fit(monkeypatch, x, aux_coef: float, n_dead: int, bias: float = 0.0, **cfg_kw) -> float:
    """fit_sae builds its SAE with sae.model.TopKSAE(cfg); wrap it so that n_dead latents start with encoder rows
    1000x too small (plus encoder bias `bias`): they never win a top-k slot. With bias 0 their
    pre-activations are not all negative, so even a ReLU'd AuxK (Gao et al.) can reach them."""
    real = S.TopKSAE

    def crippled(cfg):
        sae = real(cfg)
        with torch.no_grad():
            sae.W_enc[:n_dead] *= 1e-3
            sae.b_enc[:n_dead] = bias
        return sae

    monkeypatch.setattr("recsae_utils.sae.model.TopKSAE", crippled)  # make_sae builds the SAE there
    res = S.fit_sae(x, small_cfg(epochs=4, lr=1e-2, aux_coef=aux_coef, **cfg_kw), progress=False)
    monkeypatch.setattr("recsae_utils.sae.model.TopKSAE", real)
    idx, _ = S.encode_sparse(res.sae, x)
    return firing_stats(torch.from_numpy(idx), 128)["dead_fraction"] * 128  # never fires on the whole data


def test_auxk_revives_dead_latents(monkeypatch):
    x, _ = planted(n=10_000)
    sae = S.TopKSAE(small_cfg())
    with torch.no_grad():
        sae.W_enc[:112] *= 1e-3
        sae.b_dec.copy_(x.mean(0))
    idx0, _ = S.encode_sparse(sae, x)
    dead0 = firing_stats(torch.from_numpy(idx0), 128)["dead_fraction"] * 128
    assert 108 <= dead0 <= 112  # at the start (almost) all crippled latents never fire on this data
    assert _dead_after_fit(monkeypatch, x, aux_coef=0.0, n_dead=112) >= dead0 - 2  # no gradient reaches them
    dead_with = _dead_after_fit(monkeypatch, x, aux_coef=1 / 32, n_dead=112)
    assert dead_with <= 80, dead_with  # AuxK fits them to the residual until they win top-k slots (~58)


def test_auxk_without_relu_revives_latents_negative_everywhere(monkeypatch):
    """The way latents die on h_u: encoder bias below zero, pre-activation negative on every input. A ReLU'd
    AuxK value is then 0 and passes no gradient (they stay dead); aux_relu=False still reaches them."""
    x, _ = planted(n=10_000)
    stuck = _dead_after_fit(monkeypatch, x, aux_coef=1 / 32, n_dead=112, bias=-1.0, aux_relu=True, l2=0.0)
    assert stuck >= 110, stuck
    revived = _dead_after_fit(monkeypatch, x, aux_coef=1 / 32, n_dead=112, bias=-1.0, aux_relu=False, l2=0.0)
    assert revived <= 80, revived


def test_lr_schedule_known_values():
    cfg = S.SAEConfig(lr=1.0, lr_decay=0.5)
    assert [S.scheduled_lr(cfg, t, 100) for t in (0, 49, 50, 75, 99)] == [1.0, 1.0, 1.0, 0.5, 0.02]
    assert S.scheduled_lr(S.SAEConfig(lr=0.3, lr_decay=0.0), 99, 100) == 0.3          # lr_decay 0: constant


# ---------------------------------------------------------------------------------------------------
# 5. determinism


def test_same_seed_same_weights_other_seed_differs():
    x, _ = planted(n=3_000)
    a = S.fit_sae(x, small_cfg(), progress=False).sae
    b = S.fit_sae(x, small_cfg(), progress=False).sae
    c = S.fit_sae(x, small_cfg(seed=1), progress=False).sae
    assert same_weights(a, b)
    assert not torch.equal(a.W_enc, c.W_enc) and not torch.equal(a.W_dec, c.W_dec)


# ---------------------------------------------------------------------------------------------------
# 6. resume


def test_resume_gives_identical_weights(tmp_path):
    x, _ = planted(n=3_000)
    held = x[:500]
    calls: list[int] = []

    def select(sae):
        calls.append(1)
        return {"EV": reconstruction_metrics(held, S.reconstruct(sae, held))["explained_variance"]}

    full = S.fit_sae(x, small_cfg(epochs=4), select_fn=select, select_key="EV", out_dir=tmp_path / "a",
                     progress=False)
    assert len(calls) == 4 and (tmp_path / "a" / "sae_last.safetensors").exists()

    # (i) a shorter run extended with the same config
    S.fit_sae(x, small_cfg(epochs=2), select_fn=select, select_key="EV", out_dir=tmp_path / "b", progress=False)
    calls.clear()
    ext = S.fit_sae(x, small_cfg(epochs=4), select_fn=select, select_key="EV", out_dir=tmp_path / "b",
                    progress=False)
    assert len(calls) == 2                      # only epochs 3 and 4 were trained
    assert same_weights(ext.sae, full.sae) and ext.best_epoch == full.best_epoch
    assert [r["dev"] for r in ext.history] == [r["dev"] for r in full.history]

    # (ii) a run killed during epoch 3, rerun
    def dies_at_3(sae):
        if len(calls) == 2:
            raise KeyboardInterrupt
        return select(sae)

    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        S.fit_sae(x, small_cfg(epochs=4), select_fn=dies_at_3, select_key="EV", out_dir=tmp_path / "c",
                  progress=False)
    calls.clear()
    res = S.fit_sae(x, small_cfg(epochs=4), select_fn=select, select_key="EV", out_dir=tmp_path / "c",
                    progress=False)
    assert len(calls) == 2 and same_weights(res.sae, full.sae)
    assert same_weights(S.load_sae(tmp_path / "c" / "sae.safetensors"), full.sae)  # the best epoch's export

    # (iii) another config starts over
    calls.clear()
    S.fit_sae(x, small_cfg(epochs=4, lr=1e-3), select_fn=select, select_key="EV", out_dir=tmp_path / "a",
              progress=False)
    assert len(calls) == 4


# ---------------------------------------------------------------------------------------------------
# 7. encode / decode / sparse helpers


def test_encode_decode_match_dense_formula():
    g = torch.Generator().manual_seed(0)
    sae = S.random_sae(S.SAEConfig(d_in=16, n_latents=256, k=8), x_mean=torch.randn(16, generator=g))
    x = torch.randn(300, 16, generator=g)
    x_hat, vals, idx = sae(x)
    assert vals.shape == idx.shape == (300, 8) and idx.dtype == torch.long and (vals >= 0).all()
    assert (idx.sort(1).values.diff(1) > 0).all()                        # k distinct latents per row
    pre = sae.pre_acts(x).detach()
    assert torch.allclose(vals.sort(1).values, pre.topk(8).values.sort(1).values, atol=1e-6)
    z = torch.zeros_like(pre).scatter_(1, idx, vals)                    # the dense textbook formula
    assert torch.allclose(x_hat, z @ sae.W_dec + sae.b_dec, atol=1e-5)
    assert torch.allclose(sae.decode(*sae.encode(x)), x_hat)
    ii, vv = S.encode_sparse(sae, x, batch_size=64)
    assert ii.dtype.name == "int32" and vv.dtype.name == "float32" and ii.shape == (300, 8)
    assert (vv[:, :-1] >= vv[:, 1:]).all()                               # largest first
    assert torch.allclose(sae.decode(torch.from_numpy(vv), torch.from_numpy(ii).long()), x_hat, atol=1e-6)
    assert torch.allclose(S.reconstruct(sae, x, batch_size=64), x_hat, atol=1e-6)


def test_sparse_backward_matches_dense_autograd():
    cfg = S.SAEConfig(d_in=16, n_latents=128, k=4)
    sae = S.TopKSAE(cfg).double()
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
    x = torch.randn(64, 16, dtype=torch.float64)
    x_hat, vals, idx = sae(x)
    g_sparse = torch.autograd.grad(S.fvu_loss(x, x_hat), list(sae.parameters()))
    pre = sae.pre_acts(x)                                               # dense autograd reference
    z = torch.zeros_like(pre).scatter(1, idx, pre.gather(1, idx))
    g_dense = torch.autograd.grad(S.fvu_loss(x, z @ sae.W_dec + sae.b_dec), list(sae.parameters()))
    for a, b in zip(g_sparse, g_dense):
        assert torch.allclose(a, b, atol=1e-10)


def test_fast_topk_is_exact_even_with_ties():
    g = torch.Generator().manual_seed(0)
    for pre in (torch.randn(200, 2048, generator=g), torch.randint(0, 3, (200, 2048), generator=g).float()):
        vals, idx = S.fast_topk(pre, 32)
        assert torch.equal(vals.sort(1).values, pre.topk(32).values.sort(1).values)
        assert torch.equal(pre.gather(1, idx), vals) and (idx.sort(1).values.diff(1) > 0).all()


def test_save_load_and_random_sae(tmp_path):
    cfg = S.SAEConfig(d_in=16, n_latents=64, k=4)
    mean = torch.arange(16.0)
    r = S.random_sae(cfg, x_mean=mean)
    assert torch.equal(r.b_dec.detach(), mean) and torch.allclose(r.W_dec.norm(dim=1), torch.ones(64))
    assert r.W_enc.abs().max() <= 1 / 4 and r.W_enc.std() > 0.1          # U(+-1/sqrt(d_in)), like nn.Linear
    S.save_sae(tmp_path / "s.safetensors", r, {"note": 1})
    back = S.load_sae(tmp_path / "s.safetensors")
    assert same_weights(back, r) and back.cfg == cfg


# ---------------------------------------------------------------------------------------------------
# 8. the reference variant's documented differences


def test_reference_variant_differs_as_documented():
    x, _ = planted(n=4_000)
    ref = S.fit_sae(x, small_cfg(variant="reference", lr=1e-2), progress=False)
    oai = S.fit_sae(x, small_cfg(lr=1e-2), progress=False)
    norms = ref.sae.W_dec.norm(dim=1)
    assert (norms - 1).abs().max() > 1e-3                    # renormalised only at the start of each epoch
    assert torch.allclose(oai.sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-5)
    assert ref.history[0]["aux"] == 0.0                       # no dead set in epoch 1
    assert ref.history[0]["dead"] == ref.history[0]["dead_epoch"]
    assert not same_weights(ref.sae, oai.sae)


def test_auxk_target_sign_bias_and_detach():
    """openai: e = x - x_hat detached, e_hat without b_dec, normalised by var(e); reference: e = x_hat - x
    not detached, e_hat with b_dec, normalised by var(x) and scaled by min(n_dead / k_aux, 1)."""
    for variant in ("openai", "reference"):
        cfg = S.SAEConfig(d_in=8, n_latents=32, k=2, k_aux=4, variant=variant, aux_relu=True)
        sae = S.TopKSAE(cfg).double()
        with torch.no_grad():
            sae.b_dec.normal_()
        x = torch.randn(50, 8, dtype=torch.float64)
        vals, idx, pre, xc = sae.encode_train(x)
        x_hat = sae.decode(vals, idx)
        unused = torch.ones(32, dtype=torch.bool)
        unused[idx.reshape(-1)] = False
        dead = torch.zeros(32, dtype=torch.bool)
        dead[unused.nonzero().squeeze(1)[:2]] = True         # 2 dead latents (< k_aux)
        n_dead = int(dead.sum())
        assert n_dead == 2
        aux = S.auxk_loss(sae, x, x_hat, pre, xc, dead)
        d_idx = dead.nonzero().squeeze(1)
        z = F.relu(pre[:, d_idx])                             # every dead latent is in the top-k_aux here
        e_hat = z @ sae.W_dec[d_idx]
        if variant == "openai":
            e = x - x_hat
            want = ((e - e_hat) ** 2).sum() / ((e - e.mean(0)) ** 2).sum()
        else:
            e = x_hat - x
            want = min(n_dead / 4, 1) * ((e_hat + sae.b_dec - e) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        assert aux.item() == pytest.approx(want.item(), rel=1e-9)
        grad_live = torch.autograd.grad(aux, sae.W_dec)[0][idx.reshape(-1).unique()]
        # the live latents' decoder rows only get an AuxK gradient through the undetached target
        assert (grad_live.abs().max() == 0) == (variant == "openai")


def test_resume_with_lr_decay_is_exact_and_epochs_are_part_of_the_key(tmp_path):
    """With lr decay the schedule depends on `epochs`: a killed run resumes bit-identically, and a run
    with other `epochs` starts over instead of extending a schedule that was made for another length."""
    x, _ = planted(n=3_000)
    cfg = small_cfg(epochs=3, lr_decay=0.5)
    calls: list[int] = []

    def select(sae):
        calls.append(1)
        return {"s": 0.0}  # ties: the latest epoch wins

    def dies_at_2(sae):
        if len(calls) == 1:
            raise KeyboardInterrupt
        return select(sae)

    full = S.fit_sae(x, cfg, select_fn=select, select_key="s", out_dir=tmp_path / "a", progress=False)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        S.fit_sae(x, cfg, select_fn=dies_at_2, select_key="s", out_dir=tmp_path / "b", progress=False)
    calls.clear()
    res = S.fit_sae(x, cfg, select_fn=select, select_key="s", out_dir=tmp_path / "b", progress=False)
    assert len(calls) == 2 and same_weights(res.sae, full.sae)
    calls.clear()
    S.fit_sae(x, small_cfg(epochs=4, lr_decay=0.5), select_fn=select, select_key="s", out_dir=tmp_path / "a",
              progress=False)
    assert len(calls) == 4                      # started over: the saved run followed a 3-epoch schedule


def test_noise_aware_selection_known_answer():
    """Paired per-instance scores decide: a gain inside one standard error is a tie (lower dev FVU wins),
    a gain beyond it wins outright, a loss beyond it never wins."""
    x, _ = planted(n=1_000)
    base = np.tile([0.0, 1.0], 50)                    # 100 instances, mean 0.5
    flip = np.zeros(100)
    flip[:2] = 1.0                                    # two instances gain 1: mean +0.02, paired SE ~0.014
    rows = iter([
        {"s": base, "fvu": 0.30},                     # epoch 1: first best
        {"s": base + flip, "fvu": 0.20},              # 2: +0.02 within 1 SE (tie) and lower FVU -> best
        {"s": base + flip - 2 * flip, "fvu": 0.10},   # 3: -0.04 vs epoch 2 (SE ~0.03): a clear loss -> not best
        {"s": base + flip, "fvu": 0.25},              # 4: exact tie, higher FVU -> not best
        {"s": np.minimum(base + 0.5, 1.0), "fvu": 0.9},  # 5: +0.24, far beyond the SE -> best despite FVU
    ])

    def select(sae):
        r = next(rows)
        return {"s": float(r["s"].mean()), "fvu": r["fvu"], "per_instance": r["s"]}

    res = S.fit_sae(x, small_cfg(epochs=5), select_fn=select, select_key="s", progress=False)
    assert res.best_epoch == 5
    assert all("per_instance" not in r["dev"] for r in res.history)
    rows = iter([{"s": base, "fvu": 0.30}, {"s": base + flip, "fvu": 0.20}, {"s": base - flip, "fvu": 0.10},
                 {"s": base + flip, "fvu": 0.25}])
    assert S.fit_sae(x, small_cfg(epochs=4), select_fn=select, select_key="s", progress=False).best_epoch == 2


def test_sae_epoch_budget_in_samples():
    """The default budget is in training vectors, so datasets of any size get about as many optimiser steps:
    the real counts of ML-1M and Grocery give 12 and 61 epochs; an explicit sae_epochs wins; tiny sets get 1+."""
    from recsae_utils import config
    from recsae_utils.stages import sae_epochs

    cfg = config.load("ml-1m", "full")
    assert cfg.sae_epochs == 0 and sae_epochs(cfg, 562_729) == 12 and sae_epochs(cfg, 107_211) == 61
    assert sae_epochs(cfg, 10**9) == 1
    assert sae_epochs(config.load("ml-1m", "full", sae_epochs=5), 107_211) == 5
    assert sae_epochs(config.load("ml-1m", "tiny"), 100) == 3


def test_noise_aware_patience_counts_from_the_selected_epoch():
    """Dev metric flat within its noise (a small wobble, never a clear gain) while the dev FVU keeps falling:
    each epoch ties and takes over as best, so a patience of 2 never stops the fit. Without per-instance
    scores the ReChorus rule applies (the last 2 raw scores never increase) and stops it at epoch 3."""
    x, _ = planted(n=1_000)
    base = np.tile([0.0, 1.0], 50)
    bump = np.zeros(100)
    bump[:3] = [1.0, 1.0, -1.0]                        # epoch 2: mean +0.01, paired SE ~0.017 -> a tie

    def run(per_instance: bool):
        it = iter(range(6))

        def select(sae):
            e = next(it)
            s = base + (bump if e == 1 else 0.0)
            out = {"s": float(s.mean()), "fvu": 1.0 / (e + 1)}
            return {**out, "per_instance": s} if per_instance else out

        return S.fit_sae(x, small_cfg(epochs=6, early_stop=2), select_fn=select, select_key="s", progress=False)

    aware = run(True)
    assert len(aware.history) == 6 and aware.best_epoch == 6
    raw = run(False)
    assert len(raw.history) == 3 and raw.best_epoch == 2


def test_total_variance_in_blocks_and_fingerprint_without_a_copy():
    """Up to `block` entries the sum is the one-expression float64 sum; past it, row blocks give the same
    value to float64 rounding (no float64 copy of a large x); the fingerprint hashes the same bytes as before."""
    import hashlib

    from recsae_utils.sae import data_fingerprint, total_variance

    x = torch.randn(3001, 16, generator=torch.Generator().manual_seed(0)) * 3 + 5
    whole = float(((x.double() - x.double().mean(0)) ** 2).sum())
    assert total_variance(x) == whole
    assert total_variance(x, block=16 * 100) == pytest.approx(whole, rel=1e-12)
    assert total_variance(torch.ones(10, 4), block=8) == 0.0
    assert data_fingerprint(x) == hashlib.blake2b(x.numpy().tobytes(), digest_size=8).hexdigest()


def test_a_nonfinite_loss_stops_the_fit_naming_the_epoch_and_the_setting(tmp_path):
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    x[5, 3] = float("nan")
    cfg = S.SAEConfig(d_in=8, n_latents=16, k=2, batch_size=64, epochs=2, lr=1e-3)
    with pytest.raises(ArithmeticError, match=r"SAE fit \(16 latents, k=2, openai\) diverged at epoch 1.*RECSAE_SAE_LR=0.001"):
        S.fit_sae(x, cfg, out_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob("*.safetensors"))


def test_a_damaged_resume_point_starts_the_fit_over(tmp_path):
    """A cut-short sae_last.safetensors failed every rerun with safetensors' 'incomplete metadata' and no file
    name; it is now named in a note and the fit starts over, ending with a fresh fit's weights."""
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    cfg = S.SAEConfig(d_in=8, n_latents=16, k=2, batch_size=64, epochs=2, lr=1e-3)
    fresh = S.fit_sae(x, cfg, out_dir=tmp_path / "a", progress=False)
    last = tmp_path / "a" / "sae_last.safetensors"
    last.write_bytes(last.read_bytes()[:30])
    from recsae_utils import artifacts
    with pytest.raises(artifacts.CheckpointError, match=f"{last}: unreadable checkpoint"):
        artifacts.load_weights(last)
    again = S.fit_sae(x, cfg, out_dir=tmp_path / "a", progress=False)
    assert len(again.history) == 2 and all(torch.equal(v, again.sae.state_dict()[k]) for k, v in fresh.sae.state_dict().items())
