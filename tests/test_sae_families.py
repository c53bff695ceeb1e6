"""The BatchTopK and Matryoshka SAE families (recsae_utils.sae): planted-dictionary recovery, known answers
for the batch-wide selection, the nested-prefix loss and the inference threshold, and the padded codes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsae_utils import sae as S
from recsae_utils.dictionary import firing_index
from test_sae import one_thread  # noqa: F401  (autouse: one torch thread for these tiny problems)


def planted(n=10_000, d=32, n_atoms=64, active=3, noise=0.01, seed=0):
    """x = sum of `active` atoms of a unit-norm dictionary D (coefficients 0.5-1.5) plus small noise. 32-d,
    not test_sae's 16-d: with 64 atoms in 16 dimensions the interference between atoms decides which
    samples win BatchTopK's shared slots, and BatchTopK then recovers only about half the atoms (TopK's
    per-sample budget does not care)."""
    g = torch.Generator().manual_seed(seed)
    D = F.normalize(torch.randn(n_atoms, d, generator=g), dim=1)
    idx = torch.rand(n, n_atoms, generator=g).topk(active, dim=1).indices
    coef = torch.zeros(n, n_atoms).scatter_(1, idx, 0.5 + torch.rand(n, active, generator=g))
    return coef @ D + noise * torch.randn(n, d, generator=g), D


def cfg(**kw) -> S.SAEConfig:
    base = dict(d_in=32, n_latents=128, k=3, k_aux=8, batch_size=256, lr=3e-3, epochs=8, dead_window=5_000,
                aux_relu=False, l2=1e-6, lr_decay=0.0)
    return S.SAEConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def fits():
    x, D = planted()
    return x, D, {f: S.fit_sae(x, cfg(family=f, epochs=ep), progress=False).sae
                  for f, ep in (("batchtopk", 8), ("matryoshka", 12))}


def recovered(D: torch.Tensor, sae: S.TopKSAE) -> float:
    cos = D @ F.normalize(sae.W_dec.detach(), dim=1).T
    return float((cos.max(1).values >= 0.9).float().mean())


def test_batchtopk_recovers_planted_dictionary(fits):
    x, D, saes = fits
    assert recovered(D, saes["batchtopk"]) >= 0.9
    idx, val = S.encode_sparse(saes["batchtopk"], x)
    l0 = (val > 0).sum(1)
    assert 2.0 <= l0.mean() <= 4.0 and l0.max() > l0.min()  # about k on average, varying per sample
    assert idx.shape[1] == 4 * 3 >= l0.max()                  # width = k_max = 4k, whatever the rows


def test_matryoshka_recovers_planted_dictionary_and_its_prefix_reconstructs_alone(fits):
    """Matryoshka's later latents refine what its first prefixes already reconstruct, so on a flat planted
    dictionary fewer decoder rows equal an atom than with BatchTopK (about 0.8 here, after 12 epochs; 0.7 after 8). What it buys: its
    first m/16 latents alone reconstruct x better than BatchTopK's (FVU about 0.83 against 0.97 here)."""
    x, D, saes = fits
    assert recovered(D, saes["matryoshka"]) >= 0.75

    def prefix_fvu(sae, p):
        idx, val = S.encode_sparse(sae, x)
        idx, val = torch.from_numpy(idx).long(), torch.from_numpy(val) * torch.from_numpy(idx < p)
        with torch.no_grad():
            return float(S.fvu_loss(x, sae.decode(val, idx)))

    assert prefix_fvu(saes["matryoshka"], 8) < 0.9 * prefix_fvu(saes["batchtopk"], 8)


def test_topk_family_still_recovers_in_this_setting():
    x, D = planted(n=10_000)
    assert recovered(D, S.fit_sae(x, cfg(), progress=False).sae) >= 0.9


def test_batch_topk_selection_known_answer():
    pre = torch.tensor([[5.0, 1.0, 0.0, 4.0], [3.0, 2.0, -1.0, 0.0], [0.5, 0.2, 0.1, 6.0]])
    idx, keep = S.batch_topk(pre, 6)  # the 6 largest of the batch: 6, 5, 4, 3, 2, 1
    chosen = {(b, int(j)) for b in range(3) for j, kp in zip(idx[b], keep[b]) if kp}
    assert chosen == {(0, 0), (0, 1), (0, 3), (1, 0), (1, 1), (2, 3)}
    assert idx.shape == (3, 3) and keep.sum(1).tolist() == [3, 2, 1]
    sae = S.make_sae(cfg(d_in=4, n_latents=4, k=2, family="batchtopk"))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(4))
        sae.b_dec.zero_()
    vals, idx, _, _ = sae.encode_train(pre)  # training mode: budget k * B = 6 over the batch
    dense = torch.zeros(3, 4).scatter_add_(1, idx, vals)
    assert torch.equal(dense, torch.tensor([[5.0, 1.0, 0.0, 4.0], [3.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 6.0]]))


def test_inference_threshold_known_answer_and_padding():
    sae = S.make_sae(cfg(d_in=4, n_latents=4, k=1, k_max=2, family="batchtopk", threshold_beta=0.5))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(4))
        sae.W_dec.copy_(torch.eye(4))
        sae.b_dec.zero_()
    sae.update_threshold_(torch.tensor([[2.0, 0.0], [3.0, 1.0]]))  # first batch: its smallest positive
    assert float(sae.threshold) == 1.0
    sae.update_threshold_(torch.tensor([[2.0]]))                   # then 0.5 * 1 + 0.5 * 2
    assert float(sae.threshold) == 1.5
    sae.eval()
    x = torch.tensor([[3.0, 2.0, 1.6, 0.0], [1.0, 0.5, 0.0, 0.2], [0.0, 0.0, 0.0, 4.0]])
    idx, val = S.encode_sparse(sae, x)
    # row 0: 3, 2 and 1.6 pass the threshold, the cap k_max = 2 keeps the two largest; row 1: none passes
    assert idx.shape == (3, 2)
    np.testing.assert_array_equal(val, [[3.0, 2.0], [0.0, 0.0], [4.0, 0.0]])
    assert idx[0].tolist() == [0, 1] and idx[2, 0] == 3
    f = firing_index(idx, val, 4)  # value-0 padding is not a firing
    assert f.counts.tolist() == [1, 1, 0, 1]
    assert torch.allclose(S.reconstruct(sae, x), torch.tensor([[3.0, 2.0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 4.0]]))


def test_untrained_threshold_family_encodes_per_sample_topk():
    sae = S.random_sae(cfg(family="batchtopk"))
    idx, val = S.encode_sparse(sae, torch.randn(50, 32, generator=torch.Generator().manual_seed(1)))
    assert idx.shape == (50, 3)


def test_matryoshka_loss_known_answer():
    """Two prefixes (1, 2) of a 2-latent dictionary e1, e2; x = (2, 1), code z = (2, 1): the first prefix
    reconstructs (2, 0), the full one x itself. FVU over the batch {x, -x} (mean 0, total variance 10):
    prefix 1 leaves 1 + 1 = 2, so loss = (2/10 + 0) / 2 = 0.1."""
    sae = S.make_sae(S.SAEConfig(d_in=2, n_latents=2, k=2, family="matryoshka", prefixes=(1, 2)))
    assert sae.prefixes == (1, 2)
    with torch.no_grad():
        sae.W_dec.copy_(torch.eye(2))
        sae.b_dec.zero_()
    x = torch.tensor([[2.0, 1.0], [-2.0, -1.0]])
    idx = torch.tensor([[0, 1], [0, 1]])
    vals = torch.tensor([[2.0, 1.0], [-2.0, -1.0]])  # signed on purpose: the loss is linear in the code
    x_hat = sae.decode(vals, idx)
    assert torch.allclose(x_hat, x)
    assert S.reconstruction_loss(sae, x, vals, idx, x_hat).item() == pytest.approx(0.1)
    assert S.matryoshka_prefixes(2048) == (128, 256, 512, 1024, 2048)
    with pytest.raises(ValueError, match="end at n_latents"):
        S.matryoshka_prefixes(64, (8, 32))


def test_topk_config_dict_unchanged_and_bad_family_rejected():
    d = S.SAEConfig().to_dict()
    assert not set(d) & set(S.SAEConfig.FAMILY_FIELDS)  # cache keys and summaries of "topk" stay as they were
    assert S.SAEConfig(family="matryoshka").to_dict()["prefixes"] == []
    with pytest.raises(ValueError, match="unknown SAE family"):
        S.SAEConfig(family="gated")
    with pytest.raises(ValueError, match="needs variant 'openai'"):
        S.SAEConfig(family="batchtopk", variant="reference")


def test_threshold_family_round_trip_and_resume(tmp_path):
    x, _ = planted(n=2_000)
    c = cfg(family="matryoshka", epochs=2)
    a = S.fit_sae(x, c, out_dir=tmp_path, progress=False).sae
    assert float(a.threshold) > 0
    b = S.load_sae(tmp_path / "sae.safetensors")
    assert isinstance(b, S.BatchTopKSAE) and b.prefixes == a.prefixes and float(b.threshold) == float(a.threshold)
    for u, v in zip(S.encode_sparse(a, x), S.encode_sparse(b, x)):
        np.testing.assert_array_equal(u, v)
    c3 = S.SAEConfig(**{**c.to_dict(), "epochs": 3})
    resumed = S.fit_sae(x, c3, out_dir=tmp_path, progress=False)
    straight = S.fit_sae(x, c3, progress=False)
    assert len(resumed.history) == 3
    assert all(torch.equal(resumed.sae.state_dict()[k], straight.sae.state_dict()[k]) for k in straight.sae.state_dict())


def test_threshold_family_codes_have_one_width_whatever_the_rows():
    """The width of a code used to be the most active row of the batch: dev and test codes of one SAE came
    out 11 and 13 wide and stage 05 could not stack them (issue 20, item 4). Now every code has k_max slots."""
    sae = S.make_sae(cfg(d_in=4, n_latents=6, k=1, k_max=3, family="batchtopk"))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(6, 4))
        sae.b_dec.zero_()
    sae.threshold.fill_(0.5)
    sae.eval()
    quiet, busy = torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([[1.0, 2.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    (iq, vq), (ib, vb), (ie, _) = (S.encode_sparse(sae, x) for x in (quiet, busy, busy[:0]))
    assert iq.shape == (1, 3) and ib.shape == (2, 3) and ie.shape == (0, 3)
    np.testing.assert_array_equal(vq, [[1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(vb, [[3.0, 2.0, 1.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(S.reconstruct(sae, busy), sae.decode(torch.tensor(vb), torch.from_numpy(ib).long()))
