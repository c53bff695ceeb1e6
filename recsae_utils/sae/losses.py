"""The SAE's training objective, per batch.

    FVU   = sum_b ||x_b - x_hat_b||^2 / sum_b ||x_b - mean_batch(x)||^2
    AuxK  = ||e - e_hat||^2 / ||e - mean(e)||^2,   e = x - x_hat (detached),
            e_hat = sum over the top-k_aux *dead* latents' pre-activations times their W_dec rows
    loss  = FVU + aux_coef * AuxK

"matryoshka": loss = mean_g FVU(x, x_hat_g) + aux_coef * AuxK, x_hat_g decoded from the latents below
prefix p_g (the mean rather than the sum keeps aux_coef's meaning and the loss on the FVU scale).

"reference" AuxK (the RecSAE code's quirks): no AuxK in epoch 1; target e = x_hat - x (EleutherAI's sign),
not detached, e_hat decoded WITH b_dec, normalised by the variance of x (not of e) and scaled by
min(n_dead / k_aux, 1).

Our one departure, `aux_relu=False` (the run default; True = Gao et al.'s code and the reference): the
AuxK values skip the ReLU. With it, a latent whose pre-activation is negative on every input gets no
gradient from AuxK either, and on h_u that is how latents die (the encoder biases drift negative).
Without the ReLU the top-k_aux dead latents always receive the gradient that moves them towards the
residual, so they can fire again (the measured effect: reports/benchmarks.md, SAE fit).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .model import TopKSAE
from .sparse import SelectedPreActs, SparseDecode, fast_topk


def sq_dev(x: Tensor) -> Tensor:
    """sum_b ||x_b - mean(x)||^2 over the batch: FVU's denominator (ddp.sq_dev when the batch's rows
    are split over torchrun ranks)."""
    return ((x - x.mean(0)) ** 2).sum()


def reconstruction_loss(sae: TopKSAE, x: Tensor, vals: Tensor, idx: Tensor, x_hat: Tensor,
                        den: Callable[[Tensor], Tensor] = sq_dev) -> Tensor:
    """FVU of x_hat; for "matryoshka" the mean FVU over the nested prefixes' reconstructions (x_hat is
    the last, full one). Loss "kl": SASRec's catalogue KL from x to x_hat (`score_table`, the item table
    fit_sae sets) plus `euclid` times that FVU."""
    if sae.cfg.family != "matryoshka":
        fvu = fvu_loss(x, x_hat, den)
    else:
        parts = [fvu_loss(x, sae.decode(vals * (idx < p), idx), den) for p in sae.prefixes[:-1]]
        fvu = torch.stack(parts + [fvu_loss(x, x_hat, den)]).mean()
    if sae.cfg.loss == "kl":
        return catalogue_kl(x, x_hat, sae.score_table) + sae.cfg.euclid * fvu
    return fvu


def catalogue_kl(h: Tensor, h_hat: Tensor, item_emb: Tensor) -> Tensor:
    """Mean over rows of KL(softmax(h E^T) || softmax(h_hat E^T)) over the real items (padding left out)."""
    E = item_emb[1:].to(h.dtype)
    lp = torch.log_softmax(h @ E.T, 1)
    lq = torch.log_softmax(h_hat @ E.T, 1)
    return (lp.exp() * (lp - lq)).sum(1).mean()


def fvu_loss(x: Tensor, x_hat: Tensor, den: Callable[[Tensor], Tensor] = sq_dev) -> Tensor:
    """Fraction of variance unexplained over the batch (sums, one division): scale-free, 1 = predict the mean."""
    return ((x - x_hat) ** 2).sum() / den(x).clamp_min(1e-12)


def auxk_loss(sae: TopKSAE, x: Tensor, x_hat: Tensor, pre: Tensor, xc: Tensor, dead: Tensor,
              den: Callable[[Tensor], Tensor] = sq_dev) -> Tensor:
    """AuxK term (before aux_coef) for sae.cfg.variant; 0 if nothing is dead. Dead latents get a gradient
    only from this term, which teaches them to explain what the live ones miss, so they can fire again."""
    cfg = sae.cfg
    dead_idx = dead.nonzero().squeeze(1)
    if dead_idx.numel() == 0 or cfg.k_aux <= 0:
        return x.new_zeros(())
    k_aux = min(cfg.k_aux, dead_idx.numel())
    sel = dead_idx[fast_topk(pre.index_select(1, dead_idx), k_aux)[1]]
    vals = SelectedPreActs.apply(pre, sel, xc, sae.W_enc, sae.b_enc)
    if cfg.aux_relu:
        vals = vals.relu()
    e_hat = SparseDecode.apply(vals, sel, sae.W_dec)
    if cfg.variant == "openai":
        return fvu_loss((x - x_hat).detach(), e_hat, den)
    scale = min(dead_idx.numel() / cfg.k_aux, 1.0)
    return scale * ((e_hat + sae.b_dec - (x_hat - x)) ** 2).sum() / den(x).clamp_min(1e-12)


def batch_loss(sae: TopKSAE, xb: Tensor, dead: Tensor, den: Callable[[Tensor], Tensor]) -> tuple[Tensor, ...]:
    """A step's forward as one function, so that DDP can run it: (loss, aux, values, indices, x_hat)."""
    vals, idx, pre, xc = sae.encode_train(xb)
    x_hat = sae.decode(vals, idx)
    fvu = reconstruction_loss(sae, xb, vals, idx, x_hat, den)
    aux = auxk_loss(sae, xb, x_hat, pre, xc, dead, den) if sae.cfg.aux_coef > 0 else fvu.new_zeros(())
    aux_w = sae.cfg.aux_coef * (sae.cfg.euclid if sae.cfg.loss == "kl" else 1.0)   # on the scale of the FVU term
    return fvu + aux_w * aux, aux, vals, idx, x_hat
