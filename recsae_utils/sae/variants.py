"""What an SAE is trained to reconstruct, and in which coordinates: the training variants of `SAEConfig`
(`loss`, `euclid`, `input`, `dense`; docs/choosing_the_sae.md has what each one measured). The KL loss is
`losses.catalogue_kl`; the fit loop (`fit.fit_sae`) applies the map and folds the result.

SASRec uses h_u only through the scores s = h E^T, so an error e = h - h_hat costs ||e E^T||^2 = e M e^T with
M = E^T E (d x d; padding row left out) in score space. Every variant but the KL loss is a fixed affine map
of h_u, fitted on the training h_u once; the SAE is fitted on x = (h - c) T by the one fit loop
(`fit.fit_sae`), then folded back so that it reads and writes h_u itself (`fold`): every later stage sees an
ordinary SAE whose decoder rows are directions in h_u space.

    loss="score"      T = (M + euclid * tr(M)/d * I)^{1/2}: the squared error of x is the score-space error
                      (plus a small Euclidean term), i.e. the M-weighted loss
    input="whitened"  T = Sigma^{-1/2} on the SAE's part of h_u (PCA whitening; Sigma its covariance)
    dense=n           the top n principal directions P (d, n) of h_u are a fixed background outside the SAE:
                      x sees only the residual (h - c)(I - P P^T); h_hat = c + (h - c) P P^T + SAE part
    loss="kl"         no map: the loss is KL(softmax(h E^T) || softmax(h_hat E^T)) over the full catalogue
                      plus euclid * FVU (Braun et al. 2024's e2e + downstream form, on one layer), in `losses`

With the background, T = Q A and T^+ = A^{-1} Q (Q = I - P P^T, A invertible), so x T^+ = (h - c) Q exactly
and the SAE's reconstruction lies in the residual subspace: the background and the SAE never share a
direction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import SAE_INPUTS as INPUTS
from ..config import SAE_LOSSES as LOSSES


@dataclass
class InputMap:
    """x = (h - center) @ T; the h-space vector of an x-space one is v @ T_inv; `background` (d, n)
    orthonormal columns kept outside the SAE."""

    center: Tensor
    T: Tensor
    T_inv: Tensor
    background: Tensor

    def to_x(self, h: Tensor) -> Tensor:
        """The SAE's input, float32, in row blocks (no float64 copy of a large h)."""
        T, c = self.T.float().to(h.device), self.center.float().to(h.device)
        return torch.cat([(b.float() - c) @ T for b in torch.split(h, 65536)]) if len(h) else h.float() @ T


def _sym_power(A: Tensor, p: float, floor: float = 1e-10) -> Tensor:
    """A^p for a symmetric positive semi-definite A (eigenvalues floored at floor * the largest)."""
    w, V = torch.linalg.eigh(A)
    w = w.clamp_min(floor * float(w.max()))
    return (V * w ** p) @ V.T


def _moments(h: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and covariance of h's rows in float64, accumulated over row blocks."""
    n = len(h)
    parts = torch.split(h, 65536)
    mean = sum(p.double().sum(0) for p in parts) / n
    cov = sum(((p.double() - mean).T @ (p.double() - mean)) for p in parts) / n
    return mean, cov


def principal_directions(h: Tensor, n: int) -> Tensor:
    """(d, n): the top-n principal directions of h's rows (orthonormal columns), largest variance first."""
    _, cov = _moments(h)
    w, V = torch.linalg.eigh(cov)
    return V[:, torch.argsort(w, descending=True)[:n]]


def score_metric(item_emb: Tensor) -> Tensor:
    """M = E^T E over the real items (row 0 = padding left out), float64 (d, d)."""
    E = torch.as_tensor(item_emb).detach().double()[1:]
    return E.T @ E


def input_map(h_train: Tensor, loss: str = "mse", input: str = "raw", dense: int = 0, euclid: float = 0.0,
              item_emb: Tensor | None = None) -> InputMap | None:
    """The map of a variant fitted on the training h_u, or None for the plain SAE (raw input, MSE or KL loss,
    no background): then nothing about the fit changes."""
    check_variant(loss, input, dense, euclid, int(h_train.shape[1]))
    if loss != "score" and input == "raw" and dense == 0:
        return None
    d = int(h_train.shape[1])
    mean, cov = _moments(h_train)
    eye = torch.eye(d, dtype=torch.float64)
    P = principal_directions(h_train, dense) if dense else torch.zeros(d, 0, dtype=torch.float64)
    Q = eye - P @ P.T
    if loss == "score":
        if item_emb is None:
            raise ValueError("loss='score' needs the item table (item_emb)")
        M = score_metric(item_emb)
        A = _sym_power(M + euclid * torch.trace(M) / d * eye, 0.5)
    elif input == "whitened":
        A = _sym_power(Q @ cov @ Q + P @ P.T, -0.5)   # whitening on the residual, identity on the background
    else:
        A = eye
    return InputMap(mean, Q @ A, torch.linalg.inv(A) @ Q, P)


def check_variant(loss: str, input: str, dense: int, euclid: float, d: int) -> None:
    """Clear errors for settings that cannot work together."""
    if loss not in LOSSES:
        raise ValueError(f"unknown SAE loss {loss!r}: one of {LOSSES}")
    if input not in INPUTS:
        raise ValueError(f"unknown SAE input {input!r}: one of {INPUTS}")
    if isinstance(dense, bool) or not isinstance(dense, int) or not 0 <= dense < d:
        raise ValueError(f"SAE dense (background directions) must be an integer in 0..{d - 1}, got {dense!r}")
    if not (isinstance(euclid, (int, float)) and euclid >= 0 and euclid == euclid and euclid != float("inf")):
        raise ValueError(f"SAE euclid (weight of the Euclidean term) must be a finite number >= 0, got {euclid!r}")
    if loss == "score" and input == "whitened":
        raise ValueError("loss='score' fixes the SAE's coordinates (score space); it cannot be combined with "
                         "input='whitened'")
    if loss == "kl" and (input != "raw" or dense):
        raise ValueError("loss='kl' compares SASRec's output from h and from the reconstruction; it needs "
                         "input='raw' and dense=0")


def fold(sae, imap: InputMap | None):
    """The SAE fitted on x = imap.to_x(h), rewritten to act on h: W_enc' = W_enc T^T, W_dec' = W_dec T^+,
    b_dec' = c + b_dec T^+, b_enc' = b_enc + (b_dec T^+ T - b_dec) W_enc^T (so the pre-activations, hence
    the code, are unchanged), and the background basis set. Decoder rows keep their h-space lengths (a
    latent's value times its row is its contribution to h_u). None: the SAE itself."""
    if imap is None:
        return sae
    dev = sae.W_dec.device
    out = type(sae)(sae.cfg).to(dev)          # the same family (model.make_sae's choice)
    out.load_state_dict(sae.state_dict())
    T, Ti = imap.T.float().to(dev), imap.T_inv.float().to(dev)
    with torch.no_grad():
        b = sae.b_dec.detach().float()
        out.W_enc.copy_(sae.W_enc.detach() @ T.T)
        out.b_enc.copy_(sae.b_enc.detach() + (b @ Ti @ T - b) @ sae.W_enc.detach().T)
        out.W_dec.copy_(sae.W_dec.detach() @ Ti)
        out.b_dec.copy_(imap.center.float().to(dev) + b @ Ti)
        if imap.background.shape[1]:
            out.bg_center.copy_(imap.center.float())
            out.bg_basis.copy_(imap.background.float())
    return out.train(sae.training)


def dense_span(sae, h: Tensor, generic: Tensor, share: float = 0.9, rows: int = 100_000) -> int:
    """The background size the data asks for: the smallest n whose top-n principal directions of h hold
    `share` of the variance of what the SAE's generic (dense) latents `generic` ((m,) bool) write into h
    (their summed contribution per row, on the first `rows` rows)."""
    x = h[:rows].float()
    with torch.no_grad():
        vals, idx = sae.encode(x)
        v = (vals * generic[idx]).double()
        contrib = torch.einsum("bk,bkd->bd", v, sae.W_dec.detach().double()[idx])
    c = contrib - contrib.mean(0)
    P = principal_directions(h, h.shape[1] - 1)
    held = ((c @ P) ** 2).sum(0).cumsum(0) / (c ** 2).sum().clamp_min(1e-30)
    return int(torch.searchsorted(held, torch.tensor(share, dtype=held.dtype)).item()) + 1


def variant_tag(cfg) -> str:
    """The suffix of a variant's fit folder ("" for the plain SAE): e.g. "_score", "_kl0.1", "_whitened_dense16"."""
    parts = []
    if cfg.loss != "mse":
        parts.append(cfg.loss + (f"{cfg.euclid:g}" if cfg.euclid else ""))
    if cfg.input != "raw":
        parts.append(cfg.input)
    if cfg.dense:
        parts.append(f"dense{cfg.dense}")
    return "".join(f"_{p}" for p in parts)
