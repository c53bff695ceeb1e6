"""The recommenders a run can interpret, behind one interface (base.RecModel: h, E, h · Eᵀ; docs/models.md).

RECSAE_MODEL (RunConfig.model) names one of MODELS; `model_config` turns a run's settings into that model's
config, `build` makes the model (LightGCN also needs the training graph) and `load` reads a checkpoint
back. Adding a model = one module here with a RecModel subclass and its config dataclass, one entry in
MODELS, and its ReChorus defaults in config.MODEL_DEFAULTS.
"""
from __future__ import annotations

from pathlib import Path

from .. import artifacts
from ..data import Dataset, user_item_csr
from .base import RecModel
from .bprmf import BPRMF, BPRMFConfig
from .gru4rec import GRU4Rec, GRU4RecConfig
from .lightgcn import LightGCN, LightGCNConfig, train_pairs
from .sasrec import SASRec, SASRecConfig

MODELS: dict[str, tuple[type[RecModel], type]] = {
    "sasrec": (SASRec, SASRecConfig), "gru4rec": (GRU4Rec, GRU4RecConfig),
    "bprmf": (BPRMF, BPRMFConfig), "lightgcn": (LightGCN, LightGCNConfig)}


def model_config(name: str, ds: Dataset, d_model: int = 64, history_max: int = 20):
    """The config of model `name` for dataset `ds` (sizes from the data, width and history from the run)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if name == "sasrec":
        return SASRecConfig(n_items=ds.n_items, d_model=d_model, history_max=history_max)
    if name == "gru4rec":
        return GRU4RecConfig(n_items=ds.n_items, d_model=d_model, history_max=history_max)
    if name == "bprmf":
        return BPRMFConfig(n_users=ds.n_users, n_items=ds.n_items, d_model=d_model)
    n_edges = len(train_pairs(*user_item_csr(ds, ("train",)))[0])
    return LightGCNConfig(n_users=ds.n_users, n_items=ds.n_items, n_edges=n_edges, d_model=d_model)


def label(name: str) -> str:
    """The display name of model `name` (e.g. 'SASRec')."""
    return MODELS[name][0].label


def name_of(model_cfg) -> str:
    """The MODELS name of a model config."""
    for name, (_, cfg_type) in MODELS.items():
        if isinstance(model_cfg, cfg_type):
            return name
    raise TypeError(f"{type(model_cfg).__name__} is not the config of a model in MODELS")


def build(model_cfg, ds: Dataset | None = None) -> RecModel:
    """A freshly initialised model from its config (the caller seeds torch first). LightGCN propagates over
    the training interactions of `ds`, so it needs it; the other models do not."""
    cls = MODELS[name_of(model_cfg)][0]
    if cls is LightGCN:
        if ds is None:
            raise ValueError("LightGCN needs the dataset: it propagates over the training interactions")
        return LightGCN(model_cfg, user_item_csr(ds, ("train",)))
    return cls(model_cfg)


def checkpoint_meta(model: RecModel) -> dict:
    """What a checkpoint records of its model: the config, plus the model's name unless it is SASRec (whose
    checkpoints predate the other models and stay byte-for-byte as they were)."""
    meta = {"model": model.cfg.to_dict()}
    if model.name != "sasrec":
        meta["arch"] = model.name
    return meta


def load(path: str | Path, ds: Dataset | None = None, device: str = "cpu") -> RecModel:
    """A trained model back from its safetensors checkpoint (weights + config), in eval mode."""
    tensors, meta = artifacts.load_weights(path)
    name = meta.get("arch", "sasrec")
    if name not in MODELS:
        raise artifacts.CheckpointError(f"{path}: unknown model {name!r} (known: {', '.join(MODELS)})")
    model = build(MODELS[name][1](**meta["model"]), ds)
    model.load_state_dict(tensors)
    return model.to(device).eval()


__all__ = ["BPRMF", "BPRMFConfig", "GRU4Rec", "GRU4RecConfig", "LightGCN", "LightGCNConfig", "MODELS", "RecModel",
           "SASRec", "SASRecConfig", "build", "checkpoint_meta", "label", "load", "model_config",
           "name_of"]
