"""The SAE on SASRec's user vector h_u (Gao et al. 2024; RecSAE, docs/protocol.md) and its three families.

    z     = TopK_k( ReLU(W_enc (x - b_dec) + b_enc) )           k non-zeros out of n_latents
    x_hat = sum_{j in TopK} z_j W_dec[j] + b_dec                  (W_dec rows have unit norm)

The top-k is taken on the raw pre-activations; ReLU is monotone, so the chosen set is the same.

Two training variants (SAEConfig.variant; the losses and the fit loop read it). "openai" (Gao et al.): decoder
rows renormalised after every step and the gradient component parallel to each row removed before it (so
Adam cannot spend steps changing a row's norm, which the renormalisation would undo); dead = not fired in the
last `dead_window` training samples; a latent has fired when its value is > 0. "reference" (the RecSAE code,
quirks kept on purpose so its numbers can be matched): rows renormalised once per epoch, no projection;
dead = never in a top-k during the whole previous epoch; a latent has fired when it holds any top-k slot.

Families (SAEConfig.family). "topk" (the default) is everything above. The two others need "openai".
"batchtopk" (Bussmann et al. 2024): in training the k*B largest pre-activations of the whole batch win,
    S     = TopK_{k B}( {pre_bj : b < B, j < n_latents} ),   z_bj = ReLU(pre_bj) if (b, j) in S else 0
  so the samples share a budget of k*B slots (mean L0 = k) and a hard sample can take more than k. A
  batch is not available at inference, so a code there comes from one learned threshold,
    z_j   = pre_j if pre_j > theta else 0,   theta <- (1 - threshold_beta) theta + threshold_beta min_{S, z>0} z
  (theta = an exponential moving average, over training steps, of the smallest positive selected value;
  it starts at the first batch's value). The number of active latents then varies per sample: it is
  capped at k_max (the k_max largest are kept; default 4k) and every code has k_max slots, the unused ones
  (index, value 0), which every reader of codes takes as "not firing". An SAE that
  never trained (theta = 0, the random baseline) encodes with the per-sample top-k instead.
"matryoshka" (Bussmann et al. 2025; Nabeshima 2024): BatchTopK codes, and nested prefixes
  p_1 < ... < p_G = n_latents of the dictionary each reconstruct x on their own (sae.losses). The first
  latents must reconstruct alone, so they take the broad directions and later ones refine them instead of
  absorbing them; x_hat = x_hat_G is the reconstruction downstream.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import RunConfig
from .sparse import SelectedPreActs, SparseDecode, batch_topk, fast_topk
from .variants import check_variant


FAMILIES = ("topk", "batchtopk", "matryoshka")


@dataclass
class SAEConfig:
    """One SAE fit. The defaults are the run's (config.RunConfig's sae_* fields), so an SAEConfig built by
    hand trains what `make all` trains; stages.sae_config passes every field from the RunConfig anyway."""
    d_in: int = 64
    n_latents: int = RunConfig.sae_latents
    k: int = RunConfig.sae_k
    k_aux: int = 32                  # d_in // 2 (reference)
    aux_coef: float = RunConfig.sae_aux_coef
    variant: str = RunConfig.sae_variant            # "openai" or "reference"
    dead_window: int = RunConfig.sae_dead_window    # samples without firing before a latent counts as dead ("openai")
    aux_relu: bool = RunConfig.sae_aux_relu         # True = ReLU on AuxK values (Gao et al., reference); False
                                                    # revives latents whose pre-activation is negative everywhere
    lr: float = RunConfig.sae_lr
    lr_decay: float = RunConfig.sae_lr_decay        # last fraction of all steps over which lr falls linearly to 0
    l2: float = RunConfig.sae_l2                    # Adam weight decay on W_enc, W_dec, b_dec (not b_enc); reference 1e-6
    batch_size: int = RunConfig.sae_batch_size
    epochs: int = 50                 # the run derives its epochs from sae_samples (stages.sae_epochs)
    early_stop: int = 10             # patience on the selection score (ReChorus rule)
    seed: int = RunConfig.seed
    family: str = "topk"             # "topk", "batchtopk" or "matryoshka" (module docstring)
    k_max: int = 0                   # batchtopk/matryoshka inference: most active latents per sample (0 = 4k)
    threshold_beta: float = 0.01     # weight of each batch in the inference threshold's moving average
    prefixes: tuple = ()             # matryoshka prefix sizes, increasing, last = n_latents (() = m/16 .. m)
    loss: str = RunConfig.sae_loss       # "mse", "score" or "kl": what is reconstructed (variants.py)
    euclid: float = RunConfig.sae_euclid  # weight of the Euclidean term beside "score" / "kl"
    input: str = RunConfig.sae_input     # "raw" or "whitened"
    dense: int = RunConfig.sae_dense     # top principal directions of the input kept outside the SAE

    FAMILY_FIELDS = ("family", "k_max", "threshold_beta", "prefixes")
    VARIANT_FIELDS = ("loss", "euclid", "input", "dense")

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown SAE family {self.family!r}: one of {FAMILIES}")
        if self.family != "topk" and self.variant != "openai":
            raise ValueError(f"SAE family {self.family!r} needs variant 'openai', got {self.variant!r}")
        check_variant(self.loss, self.input, self.dense, self.euclid, self.d_in)
        if not self.plain() and self.variant != "openai":
            raise ValueError(f"SAE loss/input/dense settings need variant 'openai', got {self.variant!r}")

    def plain(self) -> bool:
        """The SAE of h_u itself: MSE, raw input, no background."""
        return (self.loss, self.euclid, self.input, self.dense) == ("mse", 0.0, "raw", 0)

    def to_dict(self) -> dict:
        """The fields; a "topk" config leaves the other families' fields out and a plain one the variant
        fields, so its dict (and every cache key and summary built on it) is what it was before they existed."""
        d = asdict(self)
        d["prefixes"] = list(self.prefixes)
        drop = (self.FAMILY_FIELDS if self.family == "topk" else ()) + (self.VARIANT_FIELDS if self.plain() else ())
        return {k: v for k, v in d.items() if k not in drop}


class TopKSAE(nn.Module):
    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg, self.k = cfg, cfg.k
        gen = torch.Generator().manual_seed(cfg.seed)
        bound = 1 / math.sqrt(cfg.d_in)  # nn.Linear's default (Kaiming-uniform with a = sqrt(5))
        w = torch.empty(cfg.n_latents, cfg.d_in).uniform_(-bound, bound, generator=gen)
        self.W_enc = nn.Parameter(w)
        self.b_enc = nn.Parameter(torch.zeros(cfg.n_latents))
        self.W_dec = nn.Parameter(w.clone())
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.normalize_decoder_()
        # training samples since each latent last fired ("openai" dead rule); a buffer so it is checkpointed
        self.register_buffer("since_fired", torch.zeros(cfg.n_latents, dtype=torch.long))
        if cfg.dense:  # the fixed background (variants.fold sets it; 0 while the SAE trains on the residual)
            self.register_buffer("bg_center", torch.zeros(cfg.d_in))
            self.register_buffer("bg_basis", torch.zeros(cfg.d_in, cfg.dense))

    def pre_acts(self, x: Tensor) -> Tensor:
        """Dense ReLU(W_enc (x - b_dec) + b_enc), (B, n_latents): for analysis, not the training path."""
        return F.relu(F.linear(x - self.b_dec, self.W_enc, self.b_enc))

    def encode_train(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(values, indices, raw pre-activations without grad, x - b_dec): what training needs."""
        xc = x.to(self.W_enc.dtype) - self.b_dec
        with torch.no_grad():  # bias folded into the matmul: addmm would first copy it into all B rows
            pre = torch.cat([xc, xc.new_ones(len(xc), 1)], 1) @ torch.cat([self.W_enc, self.b_enc[:, None]], 1).t()
            idx, keep = self._select(pre)
        vals = SelectedPreActs.apply(pre, idx, xc, self.W_enc, self.b_enc).relu()
        if keep is not None:  # padding slots of a variable-count selection: value 0, no gradient
            vals = vals * keep
        return vals, idx, pre, xc

    def _select(self, pre: Tensor) -> tuple[Tensor, Tensor | None]:
        """The chosen latents (B, width) and which slots are real (None: all). ReLU is monotone, so the
        top-k before it is the top-k after it."""
        return fast_topk(pre, self.k)[1], None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(values (B, k) >= 0, indices (B, k) long): the top-k post-ReLU pre-activations, unsorted."""
        vals, idx, _, _ = self.encode_train(x)
        return vals, idx

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """sum_j v_j W_dec[idx_j] + b_dec by gathering k rows per sample (embedding_bag), never dense."""
        return SparseDecode.apply(values.to(self.W_dec.dtype), indices, self.W_dec) + self.b_dec

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        vals, idx = self.encode(x)
        x_hat = self.decode(vals, idx)
        return (x_hat + self.background(x) if self.cfg.dense else x_hat), vals, idx

    def background(self, x: Tensor) -> Tensor:
        """(x - c) P P^T: the part of x along the fixed background directions P (`dense` > 0), which the
        reconstruction keeps as it is and the code never sees."""
        return ((x.to(self.bg_basis.dtype) - self.bg_center) @ self.bg_basis) @ self.bg_basis.T

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rows to unit norm, so a latent's value is its contribution's length (scale lives in z)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Drop the gradient component along each decoder row: it would only change the row's norm."""
        if self.W_dec.grad is not None:
            u = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
            self.W_dec.grad -= (self.W_dec.grad * u).sum(1, keepdim=True) * u


def matryoshka_prefixes(n_latents: int, prefixes=()) -> tuple[int, ...]:
    """Nested prefix sizes, increasing and ending at n_latents; () gives m/16, m/8, m/4, m/2, m."""
    p = tuple(prefixes) or tuple(n_latents // f for f in (16, 8, 4, 2, 1))
    p = tuple(sorted({int(v) for v in p if int(v) > 0}))
    if not p or p[-1] != n_latents:
        raise ValueError(f"matryoshka prefixes {prefixes!r} must be positive and end at n_latents={n_latents}")
    return p


class BatchTopKSAE(TopKSAE):
    """The "batchtopk" and "matryoshka" families (module docstring): batch-wide selection while training,
    the learned threshold `threshold` in eval mode."""

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.k_max = min(cfg.k_max or 4 * cfg.k, cfg.n_latents)
        self.prefixes = (matryoshka_prefixes(cfg.n_latents, cfg.prefixes) if cfg.family == "matryoshka"
                         else (cfg.n_latents,))
        self.register_buffer("threshold", torch.zeros(()))

    def _select(self, pre: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.training:
            return batch_topk(pre, self.k * len(pre))
        if self.threshold <= 0:  # never trained: the per-sample top-k of the same budget
            return fast_topk(pre, self.k)[1], None
        # k_max slots whatever the batch: a width that depended on the rows (the most active row) gave the dev
        # and test codes of one SAE different widths, which no caller can stack
        vals, idx = pre.topk(self.k_max, dim=1)  # sorted, so the kept slots come first
        return idx, vals > self.threshold

    @torch.no_grad()
    def update_threshold_(self, vals: Tensor) -> None:
        """Move the inference threshold towards this training batch's smallest positive selected value."""
        pos = vals[vals > 0]
        if pos.numel():
            b = self.cfg.threshold_beta
            low = pos.min()
            self.threshold.copy_(low if self.threshold <= 0 else (1 - b) * self.threshold + b * low)


def make_sae(cfg: SAEConfig) -> TopKSAE:
    """A fresh SAE of cfg's family."""
    return (TopKSAE if cfg.family == "topk" else BatchTopKSAE)(cfg)
