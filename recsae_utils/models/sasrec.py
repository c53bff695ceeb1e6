"""SASRec as ReChorus builds it (docs/protocol.md, "SASRec"), in one screen.

Differences from the SASRec paper that ReChorus (and so the reference numbers) has:
reversed position ids (most recent history item = 1, padding = 0), a post-LN block whose attention has
no output projection, FFN width = d_model, causal mask only, N(0, 0.01) init of every Linear weight,
bias and embedding, and one item table shared by input and output.

Histories are stored most-recent-first (`hist[:, 0]` is the latest item), so the position id of slot j
is simply j + 1 and "causal" means slot j attends to slots j' >= j (older items).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import MODEL_LABELS
from .base import RecModel


@dataclass
class SASRecConfig:
    n_items: int            # size of the item table (max id + 1; row 0 = padding)
    d_model: int = 64       # --emb_size
    n_layers: int = 1       # --num_layers
    n_heads: int = 1        # --num_heads
    history_max: int = 20   # --history_max
    init_std: float = 0.01  # BaseModel.init_weights

    def to_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    """ReChorus TransformerLayer: ctx = LN1(attn(x) + x); out = LN2(FFN(ctx) + ctx); no out-projection."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, d), nn.Linear(d, d)

    def ffn_out(self, attn: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx = self.ln1(attn + x)
        return self.ln2(self.ff2(F.relu(self.ff1(ctx))) + ctx)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d); allowed: (B, L, L) bool, query slot i may attend to key slot j."""
        B, L, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        q = self.q(x).view(B, L, h, dh).transpose(1, 2)
        k = self.k(x).view(B, L, h, dh).transpose(1, 2)
        v = self.v(x).view(B, L, h, dh).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        att = att.masked_fill(~allowed[:, None], float("-inf")).softmax(-1).nan_to_num(0.0)
        a = (att @ v).transpose(1, 2).reshape(B, L, d)
        return self.ffn_out(a, x)


class SASRec(RecModel):
    name, sequential = "sasrec", True
    label = MODEL_LABELS[name]

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.n_items, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.history_max + 1, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers))
        for name, p in self.named_parameters():  # ReChorus init: Linear + Embedding ~ N(0, 0.01), LN default
            if not name.split(".")[-2].startswith("ln"):
                nn.init.normal_(p, 0.0, cfg.init_std)

    def _inputs(self, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = hist > 0
        L = hist.shape[1]
        pos = torch.arange(1, L + 1, device=hist.device)[None, :] * valid
        return self.item_emb(hist) + self.pos_emb(pos), valid

    def states(self, hist: torch.Tensor) -> torch.Tensor:
        """Outputs at every slot (B, L, d), zero at padding: the general path (any depth, any heads)."""
        x, valid = self._inputs(hist)
        L = hist.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=hist.device).triu()  # key slot >= query slot
        allowed = causal[None] & valid[:, None, :]
        for blk in self.blocks:
            x = blk(x, allowed)
        return x * valid[..., None]

    def user_repr(self, hist: torch.Tensor) -> torch.Tensor:
        """h_u (B, d): the output at the most recent slot, the vector that scores the target.

        With one layer only slot 0's query matters, and its attention can be taken in input space:
        q.(W_k x + b_k) = (W_k^T q).x + const (the constant cancels in the softmax) and
        sum_j a_j (W_v x_j + b_v) = W_v (sum_j a_j x_j) + b_v (the weights sum to 1). So no key or value
        is ever projected: same maths as `states(hist)[:, 0]`, a fraction of the work."""
        if len(self.blocks) != 1:
            return self.states(hist)[:, 0]
        return self.user_repr_from(self.item_emb(hist), hist > 0)

    def user_repr_from(self, e: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """`user_repr` from already-gathered history embeddings e (B, L, d): lets training gather the
        history, positive and negative rows of the item table in one lookup."""
        if len(self.blocks) != 1:
            raise ValueError("the fast path needs one layer; use states()")
        blk = self.blocks[0]
        B, L, d = e.shape
        # padding slots never reach slot 0's attention, so their position row does not matter here
        x = e + self.pos_emb.weight[1:L + 1]
        h, dh = blk.n_heads, d // blk.n_heads
        x0 = x[:, 0]
        q = blk.q(x0).view(B, h, dh)
        qk = torch.einsum("bhe,hed->bhd", q, blk.k.weight.view(h, dh, d))  # (B, h, d): W_k^T q per head
        att = (qk @ x.transpose(1, 2)) / math.sqrt(dh)             # (B, h, L)
        att = att.masked_fill(~valid[:, None, :], float("-inf")).softmax(-1)
        ctx = att @ x                                              # (B, h, d): attention-weighted inputs
        a = torch.einsum("bhd,hed->bhe", ctx, blk.v.weight.view(h, dh, d)).reshape(B, d) + blk.v.bias
        return blk.ffn_out(a, x0)

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight

    def pair_scores(self, hist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """(B, 2) positive and negative scores: history, positive and negative rows of the item table come
        from one index_select (its backward is a cheap index_add), and only the most recent slot's output
        is computed (`user_repr_from`)."""
        ids = torch.cat([hist, pos[:, None], neg[:, None]], 1)
        e = self.item_emb.weight.index_select(0, ids.reshape(-1)).view(*ids.shape, -1)
        h = self.user_repr_from(e[:, :-2], ids[:, :-2] > 0)
        return (h[:, None, :] * e[:, -2:]).sum(-1)
