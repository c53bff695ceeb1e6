"""BPRMF as ReChorus builds it (src/models/general/BPRMF.py; Rendle et al. 2009), docs/models.md.

A general model: one free vector per user and per item, score = u · E[i]. h is the user's own row of the
user table, the same for every instance of that user. Init as ReChorus's `init_weights`: both tables
~ N(0, 0.01).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..config import MODEL_LABELS
from .base import RecModel


@dataclass
class BPRMFConfig:
    n_users: int              # size of the user table (max id + 1; row 0 unused)
    n_items: int              # size of the item table (max id + 1; row 0 = padding)
    d_model: int = 64         # --emb_size
    init_std: float = 0.01    # BaseModel.init_weights

    def to_dict(self) -> dict:
        return asdict(self)


class BPRMF(RecModel):
    name, sequential = "bprmf", False
    label = MODEL_LABELS[name]

    def __init__(self, cfg: BPRMFConfig):
        super().__init__()
        self.cfg = cfg
        self.user_emb = nn.Embedding(cfg.n_users, cfg.d_model)
        self.item_emb = nn.Embedding(cfg.n_items, cfg.d_model)
        for p in (self.user_emb.weight, self.item_emb.weight):
            nn.init.normal_(p, 0.0, cfg.init_std)

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_emb(users)

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight
