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

from ..config import MODEL_LABELS
from .base import RecModel


# pack a batch whose histories fill at most this share of its slots: packing pays on Grocery's short
# histories (41% of slots filled) and costs on ML-1M's (90%), the speed sections of reports/benchmarks.md
PACK_BELOW = 0.75


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
    name, sequential = "gru4rec", True
    label = MODEL_LABELS[name]

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
        chronological order in one gather and the GRU reads each row up to its own length, as a packed
        sequence (ReChorus's way): a time step runs only the rows still that long, so the work follows the
        batch's total history length, not B x history_max (Grocery's histories are mostly short). When
        most slots are filled (ML-1M), packing's bookkeeping costs more than it skips, and the GRU runs over
        every slot: a GRU's state at step t depends on steps <= t only, so the slots past a row's length
        never reach the state read at its last item. Both give the same h."""
        length = (hist > 0).sum(1).clamp(min=1)
        j = torch.arange(hist.shape[1], device=hist.device)
        chrono = hist.gather(1, (length[:, None] - 1 - j[None, :]).clamp(min=0))  # slots past the length unused
        x = self.item_emb(chrono)
        if float(length.sum()) > PACK_BELOW * hist.numel():
            states, _ = self.rnn(x)                                                 # (B, L, hidden)
            return self.out(states[torch.arange(len(hist), device=hist.device), length - 1])
        _, last = self.rnn(pack_padded_sequence(x, length.cpu(), batch_first=True, enforce_sorted=False))
        return self.out(last[-1])  # the state after each row's own last item, in the batch's order

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight
