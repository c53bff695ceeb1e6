"""TopK sparse autoencoder on SASRec's user vector h_u (Gao et al. 2024; RecSAE: docs/protocol.md), and two
other families trained by the same loop (SAEConfig.family, below).

    z     = TopK_k( ReLU(W_enc (x - b_dec) + b_enc) )           k non-zeros out of n_latents
    x_hat = sum_{j in TopK} z_j W_dec[j] + b_dec                  (W_dec rows have unit norm)
    FVU   = sum_b ||x_b - x_hat_b||^2 / sum_b ||x_b - mean_batch(x)||^2
    AuxK  = ||e - e_hat||^2 / ||e - mean(e)||^2,   e = x - x_hat (detached),
            e_hat = sum over the top-k_aux *dead* latents' pre-activations times their W_dec rows
    loss  = FVU + aux_coef * AuxK

Two variants. "openai" (Gao et al.): decoder rows renormalised after every step and the gradient
component parallel to each row removed before it (so Adam cannot spend steps changing a row's norm,
which the renormalisation would undo); dead = not fired in the last `dead_window` training samples.
"reference" (the RecSAE code, quirks kept on purpose so its numbers can be matched): rows renormalised
once per epoch, no projection; dead = never in a top-k during the whole previous epoch (no AuxK in
epoch 1); AuxK target e = x_hat - x (EleutherAI's sign), not detached, e_hat decoded WITH b_dec,
normalised by the variance of x (not of e) and scaled by min(n_dead / k_aux, 1).

Shared details: the top-k is taken on the raw pre-activations; ReLU is monotone, so the chosen set is
the same. A latent has fired when its value is > 0 ("openai") or when it holds any top-k slot
("reference", as its code counts).

Our one departure, `aux_relu=False` (the run default; True = Gao et al.'s code and the reference): the
AuxK values skip the ReLU. With it, a latent whose pre-activation is negative on every input gets no
gradient from AuxK either, and on h_u that is how latents die: the encoder biases drift negative, and
after 12 epochs 7.8% of the 2,048 latents never fired again (their best pre-activation on 200k
training vectors had a median of -0.25). Without the ReLU the top-k_aux dead latents always receive
the gradient that moves them towards the residual, and none stayed dead (0.0%, same run otherwise).

Speed (CPU): the only dense operations are the encoder matmul (B, d) x (d, n_latents) and its top-k
(`_topk`: exact, 1.5-2x faster than torch.topk). Gradients reach the encoder only through the k selected
pre-activations, so `_SelectedPreActs` gives it a sparse backward (O(B k d): a sparse-dense matmul and
an embedding_bag) instead of autograd's dense (B, n_latents) gradient and two more dense matmuls. The
decoder gathers k rows per sample (embedding_bag) and never builds a dense (B, n_latents) code.
Measured on ML-1M h_u from a 13-epoch SASRec (562,729 x 64; 2,048 latents, k = 32, "openai"; 1 thread
on a 2-core VM busy with another job): ~12 s/epoch at batch 1024. Batch 1024 with lr 3e-3 gives explained
variance .985 after one epoch, .994 after two, .998 after ten (1.3% dead latents by then); the
reference's lr 1e-4 needs tens of epochs (.95 after three). See benchmarks/bench_sae.py.

Families. "topk" (the default) is everything above. The two others need the "openai" variant.
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
  p_1 < ... < p_G = n_latents of the dictionary each reconstruct x on their own,
    x_hat_g = sum_{j in S, j < p_g} z_j W_dec[j] + b_dec,    loss = mean_g FVU(x, x_hat_g) + aux_coef * AuxK
  (default prefixes m/16, m/8, m/4, m/2, m; the mean rather than the sum keeps aux_coef's meaning and the
  loss on the FVU scale). The first latents must reconstruct alone, so they take the broad directions and
  later ones refine them instead of absorbing them; x_hat = x_hat_G is the reconstruction downstream.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import artifacts, ddp
from .metrics import BLOCK_ENTRIES
from .config import RunConfig
from .progress import step as progress_step
from .train import _load_state, _state_tensors, check_finite_loss, early_stop_now, flush_denormals


FAMILIES = ("topk", "batchtopk", "matryoshka")


@dataclass
class SAEConfig:
    """One SAE fit. The defaults are the run's (config.RunConfig's sae_* fields), so an SAEConfig built by
    hand trains what `make all` trains; recsae.sae_config passes every field from the RunConfig anyway."""
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
    epochs: int = 50                 # the run derives its epochs from sae_samples (recsae.sae_epochs)
    early_stop: int = 10             # patience on the selection score (ReChorus rule)
    seed: int = RunConfig.seed
    family: str = "topk"             # "topk", "batchtopk" or "matryoshka" (module docstring)
    k_max: int = 0                   # batchtopk/matryoshka inference: most active latents per sample (0 = 4k)
    threshold_beta: float = 0.01     # weight of each batch in the inference threshold's moving average
    prefixes: tuple = ()             # matryoshka prefix sizes, increasing, last = n_latents (() = m/16 .. m)

    FAMILY_FIELDS = ("family", "k_max", "threshold_beta", "prefixes")

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown SAE family {self.family!r}: one of {FAMILIES}")
        if self.family != "topk" and self.variant != "openai":
            raise ValueError(f"SAE family {self.family!r} needs variant 'openai', got {self.variant!r}")

    def to_dict(self) -> dict:
        """The fields; a "topk" config leaves the other families' fields out, so its dict (and every cache
        key and summary built on it) is what it was before the families existed."""
        d = asdict(self)
        d["prefixes"] = list(self.prefixes)
        return {k: v for k, v in d.items() if k not in self.FAMILY_FIELDS} if self.family == "topk" else d


def _topk(pre: Tensor, k: int, group: int = 8) -> tuple[Tensor, Tensor]:
    """Exact top-k along dim 1, ~1.5x faster than torch.topk on CPU for k << n. Split the columns into
    G = n/group interleaved groups; every top-k element lies in one of the k groups with the largest
    maxima (else k larger group maxima would beat it), so a top-k over the G maxima and one over those
    k*group candidates replace the top-k over all n columns. The values are exact even with ties."""
    B, n = pre.shape
    G = n // group
    if n % group or G < 2 * k:
        return pre.topk(k, dim=1, sorted=False)
    grouped = pre.view(B, group, G)  # column c = member * G + group_id
    top = grouped.amax(1).topk(k, dim=1, sorted=False).indices  # (B, k) group ids
    cand = grouped.gather(2, top[:, None, :].expand(B, group, k)).view(B, group * k)  # candidate j: member j // k
    vals, j = cand.topk(k, dim=1, sorted=False)
    return vals, (j // k) * G + top.gather(1, j % k)


def _scatter_rows(idx: Tensor, w: Tensor, A: Tensor, n_rows: int) -> Tensor:
    """out[j] = sum over (b, s) with idx[b, s] = j of w[b, s] A[b]: a sparse (n_rows, B) x dense (B, m)
    matmul, ~3x faster on CPU than index_add_ or embedding_bag's sort-based backward."""
    B, k = idx.shape
    rows = torch.arange(B, device=idx.device).repeat_interleave(k)
    G = torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), w.reshape(-1), (n_rows, B),
                                check_invariants=False)
    return torch.sparse.mm(G, A)


class _SelectedPreActs(torch.autograd.Function):
    """pre[b, idx[b, s]] for pre = xc W^T + b computed without grad; the backward touches only the
    selected entries: dW = G^T xc, db = G^T 1, dxc = sum_s g_bs W[idx_bs]."""

    @staticmethod
    def forward(ctx, pre: Tensor, idx: Tensor, xc: Tensor, W: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(idx, xc, W)
        return pre.gather(1, idx)

    @staticmethod
    def backward(ctx, g: Tensor):
        idx, xc, W = ctx.saved_tensors
        gxc = gW = gb = None
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            gWb = _scatter_rows(idx, g, torch.cat([xc, xc.new_ones(len(xc), 1)], 1), W.shape[0])
            gW, gb = gWb[:, :-1], gWb[:, -1]  # the ones column gives the bias gradient
        if ctx.needs_input_grad[2]:
            gxc = F.embedding_bag(idx, W, per_sample_weights=g, mode="sum")
        return None, None, gxc, gW, gb


class _SparseDecode(torch.autograd.Function):
    """sum_s v_bs W[idx_bs] (embedding_bag); backward dW by `_scatter_rows`, dv by embedding_bag's own
    per-sample-weight gradient (a gathered dot product), both without a dense (B, n_latents) array."""

    @staticmethod
    def forward(ctx, vals: Tensor, idx: Tensor, W: Tensor) -> Tensor:
        ctx.save_for_backward(vals, idx, W)
        return F.embedding_bag(idx, W, per_sample_weights=vals, mode="sum")

    @staticmethod
    def backward(ctx, g: Tensor):
        vals, idx, W = ctx.saved_tensors
        gv = gW = None
        if ctx.needs_input_grad[0]:
            with torch.enable_grad():
                v = vals.detach().requires_grad_()
                gv, = torch.autograd.grad(F.embedding_bag(idx, W.detach(), per_sample_weights=v, mode="sum"),
                                          v, g)
        if ctx.needs_input_grad[2]:
            gW = _scatter_rows(idx, vals, g, W.shape[0])
        return gv, None, gW


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

    def pre_acts(self, x: Tensor) -> Tensor:
        """Dense ReLU(W_enc (x - b_dec) + b_enc), (B, n_latents): for analysis, not the training path."""
        return F.relu(F.linear(x - self.b_dec, self.W_enc, self.b_enc))

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(values, indices, raw pre-activations without grad, x - b_dec): what training needs."""
        xc = x.to(self.W_enc.dtype) - self.b_dec
        with torch.no_grad():  # bias folded into the matmul: addmm would first copy it into all B rows
            pre = torch.cat([xc, xc.new_ones(len(xc), 1)], 1) @ torch.cat([self.W_enc, self.b_enc[:, None]], 1).t()
            idx, keep = self._select(pre)
        vals = _SelectedPreActs.apply(pre, idx, xc, self.W_enc, self.b_enc).relu()
        if keep is not None:  # padding slots of a variable-count selection: value 0, no gradient
            vals = vals * keep
        return vals, idx, pre, xc

    def _select(self, pre: Tensor) -> tuple[Tensor, Tensor | None]:
        """The chosen latents (B, width) and which slots are real (None: all). ReLU is monotone, so the
        top-k before it is the top-k after it."""
        return _topk(pre, self.k)[1], None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(values (B, k) >= 0, indices (B, k) long): the top-k post-ReLU pre-activations, unsorted."""
        vals, idx, _, _ = self._encode(x)
        return vals, idx

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """sum_j v_j W_dec[idx_j] + b_dec by gathering k rows per sample (embedding_bag), never dense."""
        return _SparseDecode.apply(values.to(self.W_dec.dtype), indices, self.W_dec) + self.b_dec

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        vals, idx = self.encode(x)
        return self.decode(vals, idx), vals, idx

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


def sq_dev(x: Tensor) -> Tensor:
    """sum_b ||x_b - mean(x)||^2 over the batch: FVU's denominator (ddp.sq_dev when the batch's rows
    are split over torchrun ranks)."""
    return ((x - x.mean(0)) ** 2).sum()


def batch_topk(pre: Tensor, n_keep: int) -> tuple[Tensor, Tensor]:
    """The n_keep largest entries of the whole (B, m) batch, as per-row indices (B, width) and a keep mask,
    padded to the row with the most entries (padding: index 0, keep False). Within a row, slots are in
    order of the flattened top-k (not sorted)."""
    B, m = pre.shape
    n_keep = min(n_keep, B * m)
    flat = pre.reshape(-1).topk(n_keep, sorted=False).indices
    rows, order = (flat // m).sort(stable=True)
    cols = (flat % m)[order]
    counts = torch.bincount(rows, minlength=B)
    pos = torch.arange(n_keep, device=pre.device) - (counts.cumsum(0) - counts)[rows]
    width = max(int(counts.max()) if B else 0, 1)
    idx = torch.zeros(B, width, dtype=torch.long, device=pre.device)
    keep = torch.zeros(B, width, dtype=torch.bool, device=pre.device)
    idx[rows, pos] = cols
    keep[rows, pos] = True
    return idx, keep


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
            return _topk(pre, self.k)[1], None
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


def reconstruction_loss(sae: TopKSAE, x: Tensor, vals: Tensor, idx: Tensor, x_hat: Tensor,
                        den: Callable[[Tensor], Tensor] = sq_dev) -> Tensor:
    """FVU of x_hat; for "matryoshka" the mean FVU over the nested prefixes' reconstructions (x_hat is
    the last, full one)."""
    if sae.cfg.family != "matryoshka":
        return fvu_loss(x, x_hat, den)
    parts = [fvu_loss(x, sae.decode(vals * (idx < p), idx), den) for p in sae.prefixes[:-1]]
    return torch.stack(parts + [fvu_loss(x, x_hat, den)]).mean()


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
    sel = dead_idx[_topk(pre.index_select(1, dead_idx), k_aux)[1]]
    vals = _SelectedPreActs.apply(pre, sel, xc, sae.W_enc, sae.b_enc)
    if cfg.aux_relu:
        vals = vals.relu()
    e_hat = _SparseDecode.apply(vals, sel, sae.W_dec)
    if cfg.variant == "openai":
        return fvu_loss((x - x_hat).detach(), e_hat, den)
    scale = min(dead_idx.numel() / cfg.k_aux, 1.0)
    return scale * ((e_hat + sae.b_dec - (x_hat - x)) ** 2).sum() / den(x).clamp_min(1e-12)


def _batch_loss(sae: TopKSAE, xb: Tensor, dead: Tensor, den: Callable[[Tensor], Tensor]) -> tuple[Tensor, ...]:
    """A step's forward as one function, so that DDP can run it: (loss, aux, values, indices, x_hat)."""
    vals, idx, pre, xc = sae._encode(xb)
    x_hat = sae.decode(vals, idx)
    fvu = reconstruction_loss(sae, xb, vals, idx, x_hat, den)
    aux = auxk_loss(sae, xb, x_hat, pre, xc, dead, den) if sae.cfg.aux_coef > 0 else fvu.new_zeros(())
    return fvu + sae.cfg.aux_coef * aux, aux, vals, idx, x_hat


def scheduled_lr(cfg: SAEConfig, step: int, total: int) -> float:
    """lr of 0-based step `step` of `total`: constant, then linear to 0 over the last cfg.lr_decay of the steps."""
    if cfg.lr_decay <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (total - step) / max(1, round(cfg.lr_decay * total)))


@dataclass
class FitResult:
    sae: TopKSAE
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Each epoch's shuffle depends only on (seed, epoch), so a resumed run replays it exactly."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def _fingerprint(x: Tensor) -> str:
    return hashlib.blake2b(memoryview(x.detach().cpu().contiguous().numpy()).cast("B"), digest_size=8).hexdigest()


def _total_variance(x: Tensor, block: int = BLOCK_ENTRIES) -> float:
    """Sum of squared deviations from the mean in float64; past `block` entries in row blocks, so a large x
    gets no float64 copy (up to ML-1M and Grocery's sizes one block: the sums computed as always)."""
    if x.numel() <= block:
        return float(((x.double() - x.double().mean(0)) ** 2).sum())
    parts = torch.split(x, max(1, block // x.shape[1]))
    mean = sum(p.double().sum(0) for p in parts) / len(x)
    return float(sum(((p.double() - mean) ** 2).sum() for p in parts))


@flush_denormals()
def fit_sae(x_train: Tensor, cfg: SAEConfig, select_fn: Callable[[TopKSAE], dict] | None = None,
            select_key: str = "NDCG@5", out_dir: str | Path | None = None, progress: bool = True,
            init_b_dec: bool = True, tie_se: float = 1.0) -> FitResult:
    """Fit on x_train (n, d_in) with Adam and shuffled minibatches; select the epoch with the best
    select_fn(sae)[select_key] (ReChorus: latest of the ties, early stop with patience cfg.early_stop),
    or the lowest train FVU without select_fn; restore it.

    init_b_dec (openai only; the reference keeps zeros): b_dec starts at the data MEAN, not the geometric
    median of Gao et al. The mean is the best constant under the squared error we minimise and is exact and
    cheap; the median's robustness to huge-norm outliers matters for LM residuals, not for h_u, which
    comes out of a LayerNorm. With out_dir, `sae_last.safetensors` (weights, Adam moments, best weights,
    history) is written each epoch and `sae.safetensors` (best) when it improves; a rerun with the same
    config and data resumes after the last finished epoch and ends bit-identical to an uninterrupted run
    (`epochs` is not part of that key unless lr_decay > 0, so a finished constant-lr run can be extended).

    lr_decay: the last fraction of all steps lowers lr linearly to 0. At a constant lr 3e-3 the weights
    still jitter at the end (dev top-10 overlap moved .936-.961 between epochs 9-12); the decay settles them.

    Noise-aware selection: if select_fn also returns "per_instance" (the select_key metric of every dev
    instance) and "fvu", an epoch only beats the incumbent best when its paired gain exceeds `tie_se`
    standard errors of the per-instance difference; within that band the lower dev FVU wins. On ML-1M the
    dev NDCG@5 of the 2,048-latent SAE moved by less than one paired standard error (~0.0005) between
    epochs, so the plain argmax picked an epoch by noise (epoch 6 of 12, dev FVU .0052 against .0031).
    Early stopping then counts its patience from the selected epoch: on Grocery the raw rule stopped the
    fit at epoch 16 of 61 (best raw dev NDCG@5 at epoch 6) while the dev FVU was still falling.

    FitResult.seconds is the fit's real time summed over every call that trained (kept in the checkpoint),
    not the time of the last call, which may only have reloaded a finished fit."""
    t0 = time.time()
    spent = 0.0  # seconds of earlier calls on this checkpoint
    if cfg.variant not in ("openai", "reference"):
        raise ValueError(f"unknown variant {cfg.variant!r}")
    x = x_train.detach().float().contiguous()
    n, openai = len(x), cfg.variant == "openai"
    sae = make_sae(cfg).to(x.device)
    if init_b_dec and openai:
        sae.b_dec.data.copy_(x.mean(0))
    opt = torch.optim.Adam([{"params": [sae.W_enc, sae.W_dec, sae.b_dec], "weight_decay": cfg.l2},
                            {"params": [sae.b_enc], "weight_decay": 0.0}], lr=cfg.lr, fused=True)
    total_var = _total_variance(x)
    # without lr decay nothing depends on `epochs`, so a finished run can be extended; with it, the schedule does
    key = {k: v for k, v in cfg.to_dict().items() if k != "epochs" or cfg.lr_decay > 0}
    meta = {"sae": key, "n": n, "data": _fingerprint(x) if out_dir else "", "init_b_dec": init_b_dec,
            "select": select_key if select_fn else "train_fvu", "tie_se": tie_se}
    history: list[dict] = []
    best_state = {k: v.clone() for k, v in sae.state_dict().items()}
    best_epoch, start = 0, 1
    best_per: np.ndarray | None = None  # per-instance selection metric of the best epoch (noise-aware rule)
    dead_prev: Tensor | None = None  # reference: latents not in any top-k during the previous epoch
    out = Path(out_dir) if out_dir else None
    resume = artifacts.load_resumable(out / "sae_last.safetensors", out / "sae.safetensors") if out else None
    if resume is not None:
        tensors, saved = resume[0]
        if saved.get("meta") == meta:  # another config or other data: start over
            _load_state(sae, opt, tensors)
            best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
            if "dead_prev" in tensors:
                dead_prev = tensors["dead_prev"].bool()
            if "best_per_instance" in tensors:
                best_per = tensors["best_per_instance"].double().numpy()
            history, best_epoch, start = saved["history"], saved["best_epoch"], len(saved["history"]) + 1
            spent = saved.get("seconds", sum(r["seconds"] for r in history))  # older checkpoints: epochs only

    def score(row: dict) -> float:
        return row["dev"][select_key] if select_fn else -row["train_fvu"]

    def beats_best(row: dict, per: np.ndarray | None) -> bool:
        if per is None or best_per is None or not best_epoch:
            return crit[-1] == max(crit)  # ReChorus: the latest epoch equal to the best wins
        d = per - best_per
        tol = tie_se * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        gain = score(row) - score(history[best_epoch - 1])
        return gain > tol or (gain >= -tol and row["dev"]["fvu"] <= history[best_epoch - 1]["dev"]["fvu"])

    def stop_now() -> bool:
        """ReChorus's rule on the raw scores; under the noise-aware rule, patience counts from the epoch
        that rule last selected (a dev metric flat within its noise while the FVU falls is not a plateau)."""
        if best_per is not None:
            return len(history) - best_epoch > cfg.early_stop
        return early_stop_now(crit, cfg.early_stop)

    crit = [score(r) for r in history]
    done = bool(crit) and stop_now()
    n_batches = max(1, math.ceil(n / cfg.batch_size))
    total = cfg.epochs * n_batches
    trained = False
    batch_loss = ddp.wrap(sae, _batch_loss)  # under torchrun: DDP, gradients summed over the ranks
    den = sq_dev if ddp.rank_world()[1] == 1 else ddp.sq_dev
    for epoch in range(start, cfg.epochs + 1):
        if done:
            break
        te = time.time()
        perm = torch.randperm(n, generator=_epoch_generator(cfg.seed, epoch)).to(x.device)
        if not openai:
            sae.normalize_decoder_()
        fired = torch.zeros(cfg.n_latents, dtype=torch.bool, device=x.device)
        sums = torch.zeros(3, dtype=torch.float64)  # loss * batches, squared error, aux
        bar = tqdm(torch.tensor_split(perm, n_batches), desc=f"sae epoch {epoch}", disable=not progress,
                   leave=False, mininterval=1.0)
        for i, bidx in enumerate(bar):  # near-equal batches: no tiny tail batch whose FVU denominator is ~0
            for g in opt.param_groups:
                g["lr"] = scheduled_lr(cfg, (epoch - 1) * n_batches + i, total)
            xb = x[ddp.shard(bidx, pad=False)[0]]  # this rank's rows (all on one process)
            if openai:
                dead = sae.since_fired >= cfg.dead_window
            else:
                dead = dead_prev if dead_prev is not None else torch.zeros_like(fired)
            loss, aux, vals, idx, x_hat = batch_loss(xb, dead, den)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if openai:
                sae.project_decoder_grad_()
            opt.step()
            if cfg.family != "topk":
                sae.update_threshold_(vals)
            with torch.no_grad():
                if openai:
                    sae.normalize_decoder_()
                    hit = ddp.union(idx[vals > 0], cfg.n_latents)  # fired on any rank
                    sae.since_fired += len(bidx)
                    sae.since_fired[hit] = 0
                else:
                    hit = ddp.union(idx.reshape(-1), cfg.n_latents)  # reference: any top-k slot, even a zero one
                fired[hit] = True
                sums += torch.stack([loss.detach().double(), ((xb - x_hat) ** 2).sum().double(),
                                     aux.detach().double()]).cpu()
        sums = ddp.all_sum(sums)
        check_finite_loss(float(sums[0]) / n_batches, f"SAE fit ({cfg.n_latents} latents, k={cfg.k}, {cfg.variant})",
                          epoch, f"RECSAE_SAE_LR={cfg.lr:g}")
        if not openai:
            dead_prev = ~fired
        dead_now = (sae.since_fired >= cfg.dead_window) if openai else ~fired
        row = {"epoch": epoch, "loss": float(sums[0]) / n_batches, "train_fvu": float(sums[1]) / total_var,
               "aux": float(sums[2]) / n_batches, "dead": float(dead_now.double().mean()),
               "dead_epoch": float((~fired).double().mean()), "seconds": time.time() - te}
        per = None
        if select_fn:
            sae.eval()
            row["dev"] = dict(select_fn(sae))
            per = row["dev"].pop("per_instance", None)
            per = None if per is None else np.asarray(per, dtype=np.float64)
            sae.train()
        history.append(row)
        crit.append(score(row))
        if beats_best(row, per):
            best_epoch, best_per = epoch, per
            best_state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
            if out:
                save_sae(out / "sae.safetensors", sae, {"best_epoch": epoch, "row": row})
        trained = True
        if out:
            tensors = {**_state_tensors(sae, opt), **{f"best.{k}": v for k, v in best_state.items()}}
            if dead_prev is not None:
                tensors["dead_prev"] = dead_prev.to(torch.uint8)
            if best_per is not None:
                tensors["best_per_instance"] = torch.from_numpy(best_per)
            artifacts.save_weights(out / "sae_last.safetensors", tensors,
                                   {"meta": meta, "history": history, "best_epoch": best_epoch,
                                    "seconds": spent + time.time() - t0})
        line = (f"sae epoch {epoch:3d}/{cfg.epochs} loss {row['loss']:.4f} fvu {row['train_fvu']:.4f} "
                f"dead {row['dead']:.3f} score {crit[-1]:.4f} ({row['seconds']:.1f}s)")
        progress_step(f"SAE {cfg.n_latents} latents k={cfg.k} {cfg.variant}: {line}")
        if progress:
            tqdm.write(line)
        done = stop_now()
    sae.load_state_dict(best_state)
    sae.eval()
    return FitResult(sae, history, best_epoch, spent + (time.time() - t0 if trained else 0.0))


@torch.no_grad()
def encode_sparse(sae: TopKSAE, x: Tensor, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32 (n, w), values float32 (n, w)), each row sorted by value, largest first. w = k for
    "topk" (and an untrained threshold SAE); for the threshold families w = k_max whatever the rows, and
    shorter rows end in value-0 padding, which readers take as "not firing"."""
    def batches():  # each batch's (ids int32, values float32), sorted by value within each row
        for s in range(0, len(x), batch_size):
            vals, idx = sae.encode(x[s:s + batch_size].to(sae.W_enc.device))
            vals, order = vals.sort(dim=1, descending=True)
            yield s, idx.gather(1, order).int().cpu(), vals.float().cpu()

    if sae.cfg.family == "topk" and len(x):  # fixed width: written in place, no second copy at the end
        idx_all, val_all = np.empty((len(x), sae.k), np.int32), np.empty((len(x), sae.k), np.float32)
        for s, i, v in batches():
            idx_all[s:s + len(i)], val_all[s:s + len(i)] = i.numpy(), v.numpy()
        return idx_all, val_all
    idx_out, val_out = [], []
    for _, i, v in batches():
        idx_out.append(i)
        val_out.append(v)
    if not idx_out:  # no rows: the width an encoding of rows would have
        w = sae.encode(x[:0].to(sae.W_enc.device))[1].shape[1]
        return np.zeros((0, w), np.int32), np.zeros((0, w), np.float32)
    w = max(v.shape[1] for v in val_out)
    idx_out = [F.pad(i, (0, w - i.shape[1])) for i in idx_out]
    val_out = [F.pad(v, (0, w - v.shape[1])) for v in val_out]
    return torch.cat(idx_out).numpy(), torch.cat(val_out).numpy()


@torch.no_grad()
def reconstruct(sae: TopKSAE, x: Tensor, batch_size: int = 8192) -> Tensor:
    """x_hat for every row of x, batched, on x's device."""
    if len(x) == 0:
        return x.clone()
    return torch.cat([sae(x[s:s + batch_size].to(sae.W_enc.device))[0].to(x.device)
                      for s in range(0, len(x), batch_size)])


def save_sae(path: str | Path, sae: TopKSAE, extra: dict | None = None) -> Path:
    return artifacts.save_weights(path, sae.state_dict(), {"sae": sae.cfg.to_dict(), **(extra or {})})


def load_sae(path: str | Path) -> TopKSAE:
    tensors, config = artifacts.load_weights(path)
    sae = make_sae(SAEConfig(**config["sae"]))
    sae.load_state_dict(tensors)
    return sae.eval()


def random_sae(cfg: SAEConfig, x_mean: Tensor | None = None) -> TopKSAE:
    """The "Init" baseline: exactly the weights fit_sae starts from (same seed), b_dec = data mean if given."""
    sae = make_sae(cfg)
    if x_mean is not None:
        sae.b_dec.data.copy_(x_mean.reshape(-1))
    return sae.eval()
