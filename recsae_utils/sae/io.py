"""An SAE's codes and reconstructions of many vectors (batched), and its weights on disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import artifacts
from .model import SAEConfig, TopKSAE, make_sae


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
