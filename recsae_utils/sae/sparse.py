"""The sparse kernels that keep an SAE step cheap on a CPU.

The only dense operations are the encoder matmul (B, d) x (d, n_latents) and its top-k (`fast_topk`, exact).
Gradients reach the encoder only through the k selected pre-activations, so `SelectedPreActs` gives it a
sparse backward (O(B k d): a sparse-dense matmul and an embedding_bag) instead of autograd's dense
(B, n_latents) gradient and two more dense matmuls. The decoder gathers k rows per sample (embedding_bag,
`SparseDecode`) and never builds a dense (B, n_latents) code. Speeds: reports/benchmarks.md (SAE fit).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def fast_topk(pre: Tensor, k: int, group: int = 8) -> tuple[Tensor, Tensor]:
    """Exact top-k along dim 1, faster than torch.topk on CPU for k << n. Split the columns into
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


def scatter_rows(idx: Tensor, w: Tensor, A: Tensor, n_rows: int) -> Tensor:
    """out[j] = sum over (b, s) with idx[b, s] = j of w[b, s] A[b]: a sparse (n_rows, B) x dense (B, m)
    matmul: on CPU faster than index_add_ or embedding_bag's sort-based backward."""
    B, k = idx.shape
    rows = torch.arange(B, device=idx.device).repeat_interleave(k)
    G = torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), w.reshape(-1), (n_rows, B),
                                check_invariants=False)
    return torch.sparse.mm(G, A)


class SelectedPreActs(torch.autograd.Function):
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
            gWb = scatter_rows(idx, g, torch.cat([xc, xc.new_ones(len(xc), 1)], 1), W.shape[0])
            gW, gb = gWb[:, :-1], gWb[:, -1]  # the ones column gives the bias gradient
        if ctx.needs_input_grad[2]:
            gxc = F.embedding_bag(idx, W, per_sample_weights=g, mode="sum")
        return None, None, gxc, gW, gb


class SparseDecode(torch.autograd.Function):
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
            gW = scatter_rows(idx, vals, g, W.shape[0])
        return gv, None, gW


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
