"""The base-model interface: what every stage after training needs from a recommender, and nothing more.

A model scores item i for an instance as h · E[i]: h is the instance's user representation (`user_repr`), E
the item table (`item_table`, row 0 = padding). No model here adds a bias to that product; one that does
must fold it into h and E (an extra coordinate) so that stages 03-06, which only ever see h and E, rank
exactly as the model does.

What an instance's h is made of depends on the model's kind (`sequential`):
- sequential models (SASRec, GRU4Rec) read the instance's history: the input is `inst.hist` (B, L),
  most recent item first, 0 = padding;
- general models (BPRMF, LightGCN) keep one vector per user: the input is `inst.user` (B,), so every
  instance of a user has that user's vector, whatever its position in the timeline.
`instance_inputs(inst)` picks the right array, so a caller never branches on the kind.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..data import Instances


class RecModel(nn.Module):
    """A recommender as the stages see it. Subclasses set `name` (the RECSAE_MODEL value), `label` (for
    progress lines and reports), `sequential`, a `cfg` dataclass with `to_dict()` (what the checkpoint
    and its cache key hold), and implement `user_repr` and `item_table`."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    sequential: ClassVar[bool] = True

    @property
    def dim(self) -> int:
        """Width of h and of the item table's rows."""
        return int(self.item_table().shape[1])

    def instance_inputs(self, inst: Instances) -> np.ndarray:
        """What `user_repr` takes for these instances: their histories (sequential) or their user ids."""
        return inst.hist if self.sequential else inst.user

    def user_repr(self, x: torch.Tensor) -> torch.Tensor:
        """h (B, d) for a batch of `instance_inputs`: the vector that scores every item."""
        raise NotImplementedError

    def item_table(self) -> torch.Tensor:
        """E (n_items, d): the rows h is multiplied with (for LightGCN, the propagated table)."""
        raise NotImplementedError

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item (B, n_items) for user vectors h (B, d): h · Eᵀ, no bias."""
        return h @ self.item_table().T

    def pair_scores(self, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """(B, 2) scores of each instance's positive and negative item: the training path (train.bpr_loss).
        A model overrides it where a fused path is faster; the numbers must stay h · E[item]."""
        h = self.user_repr(x)
        e = self.item_table()[torch.stack([pos, neg], 1)]
        return (h[:, None, :] * e).sum(-1)
