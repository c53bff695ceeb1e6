"""GRU4Rec as ReChorus builds it (src/models/sequential/GRU4Rec.py; Hidasi et al. 2016), docs/models.md.

A one-layer GRU reads the history oldest item first; its last hidden state goes through one Linear layer
back to the item width, and that vector is h: score = h · E[i] with the same item table as the input
(ReChorus's output table is commented out). Init as ReChorus's `init_weights`: the item table and the
Linear layer ~ N(0, 0.01) (weight and bias); the GRU keeps torch's default, which that function skips.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .base import RecModel


@dataclass
class GRU4RecConfig:
    n_items: int              # size of the item table (max id + 1; row 0 = padding)
    d_model: int = 64         # --emb_size
    hidden_size: int = 100    # --hidden_size of ReChorus's Grocery run script (its argparse default is 64)
    history_max: int = 20     # --history_max
    init_std: float = 0.01    # BaseModel.init_weights

    def to_dict(self) -> dict:
        return asdict(self)


class GRU4Rec(RecModel):
    name, label, sequential = "gru4rec", "GRU4Rec", True

    def __init__(self, cfg: GRU4RecConfig):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.n_items, cfg.d_model)
        self.rnn = nn.GRU(cfg.d_model, cfg.hidden_size, batch_first=True)
        self.out = nn.Linear(cfg.hidden_size, cfg.d_model)
        for p in (self.item_emb.weight, self.out.weight, self.out.bias):
            nn.init.normal_(p, 0.0, cfg.init_std)

    def user_repr(self, hist: torch.Tensor) -> torch.Tensor:
        """h (B, d) from histories stored most recent first (0 = padding): each row is turned to
        chronological order in one gather, and packing makes the GRU stop at each row's own length, so
        padding never enters the state."""
        length = (hist > 0).sum(1).clamp(min=1)
        j = torch.arange(hist.shape[1], device=hist.device)
        chrono = hist.gather(1, (length[:, None] - 1 - j[None, :]).clamp(min=0))  # slots past the length unused
        packed = pack_padded_sequence(self.item_emb(chrono), length.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.rnn(packed)   # (1, B, hidden) in the batch's own order
        return self.out(last[-1])

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight
