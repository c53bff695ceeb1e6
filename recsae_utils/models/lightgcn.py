"""LightGCN as ReChorus builds it (src/models/general/LightGCN.py; He et al. 2020), docs/models.md.

A general model: free user and item vectors (xavier-uniform, as ReChorus's encoder initialises them)
propagated `n_layers` times over the training interactions, the user-item graph normalised as
D^-1/2 A D^-1/2 without self-loops (a sparse CSR matrix, symmetric, so its backward is one more product); h and E are the mean of the layer-0..n outputs, score = h · E[i].
Users and items share one node index: users 0..n_users-1, then items (padding rows 0 have no edges, so
they stay their own layer-0 vector over n_layers + 1). The graph is rebuilt from the data, not saved:
`n_edges` in the config checks that a checkpoint meets the graph it was trained on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import warnings

import numpy as np
import torch
from torch import nn

from ..config import MODEL_LABELS
from .base import RecModel


@dataclass
class LightGCNConfig:
    n_users: int              # size of the user table (max id + 1; row 0 unused)
    n_items: int              # size of the item table (max id + 1; row 0 = padding)
    n_edges: int              # distinct (user, item) training pairs of the graph
    d_model: int = 64         # --emb_size
    n_layers: int = 3         # --n_layers

    def to_dict(self) -> dict:
        return asdict(self)


def train_pairs(indptr: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs of a user -> items CSR (a repeated interaction is one edge)."""
    users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    n_items = int(items.max()) + 1 if len(items) else 1
    keys = np.unique(users.astype(np.int64) * n_items + items)
    return keys // n_items, keys % n_items


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph (users first, then items) as a sparse CSR tensor with int32
    indices where they fit: on CPU its products with a dense matrix run faster than COO's, and with int32
    indices faster than with int64 (the LightGCN speed sections of reports/benchmarks.md)."""
    n = n_users + n_items
    row = np.concatenate([users, items + n_users])
    col = np.concatenate([items + n_users, users])
    order = np.lexsort((col, row))
    row, col = row[order], col[order]
    deg = np.bincount(row, minlength=n).astype(np.float64) + 1e-10   # ReChorus adds 1e-10 before the power
    d = deg ** -0.5
    val = (d[row] * d[col]).astype(np.float32)
    crow = np.r_[0, np.cumsum(np.bincount(row, minlength=n))]
    index = np.int32 if len(col) < np.iinfo(np.int32).max else np.int64
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are stable
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(torch.from_numpy(crow.astype(index)), torch.from_numpy(col.astype(index)),
                                       torch.from_numpy(val), (n, n))


class SymmetricProduct(torch.autograd.Function):
    """adj @ x for a symmetric sparse adj, whose gradient with respect to x is adj @ grad again: one more
    sparse product instead of the transpose torch would build for a general sparse matrix."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adj @ grad


class LightGCN(RecModel):
    name, sequential = "lightgcn", False
    label = MODEL_LABELS[name]

    def __init__(self, cfg: LightGCNConfig, graph: tuple[np.ndarray, np.ndarray]):
        """graph: the training interactions as a user -> items CSR (data.user_item_csr(ds, ("train",)))."""
        super().__init__()
        users, items = train_pairs(*graph)
        if len(users) != cfg.n_edges:
            raise ValueError(f"LightGCN: the graph has {len(users)} training pairs, the config {cfg.n_edges}; "
                             "this checkpoint was trained on other data")
        self.cfg = cfg
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(cfg.n_users, cfg.d_model)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(cfg.n_items, cfg.d_model)))
        # a plain attribute, not a buffer: never saved (rebuilt from the data), never broadcast by DDP; it
        # follows the weights to their device on first use
        self.adj = normalized_adjacency(users, items, cfg.n_users, cfg.n_items)
        self._cache: tuple | None = None

    def propagated(self) -> torch.Tensor:
        """Every node's vector after propagation (users first, then items): the mean of the layer outputs.
        Without gradients the result is kept until a weight changes (every in-place update bumps a tensor's
        version), so ranking many batches propagates once."""
        key = (self.user_emb._version, self.item_emb._version, self.user_emb.device)
        grad = torch.is_grad_enabled() and (self.user_emb.requires_grad or self.item_emb.requires_grad)
        if not grad and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        x = torch.cat([self.user_emb, self.item_emb])
        if self.adj.device != x.device:
            self.adj = self.adj.to(x.device)
        total = x
        for _ in range(self.cfg.n_layers):  # a running sum, not a stack of the layers: less copying
            x = SymmetricProduct.apply(self.adj, x)
            total = total + x
        out = total / (self.cfg.n_layers + 1)
        self._cache = None if grad else (key, out)
        return out

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items) after propagation."""
        out = self.propagated()
        return out[:self.cfg.n_users], out[self.cfg.n_users:]

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        return self.propagate()[0][users]

    def item_table(self) -> torch.Tensor:
        return self.propagate()[1]

    def pair_scores(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """One propagation per batch for both sides (the default would propagate twice), and one gather of
        the batch's user, positive and negative rows (one scatter back in the backward)."""
        nu, b = self.cfg.n_users, len(users)
        rows = self.propagated()[torch.cat([users, pos + nu, neg + nu])]
        return (rows[:b, None, :] * rows[b:].view(2, b, -1).transpose(0, 1)).sum(-1)
