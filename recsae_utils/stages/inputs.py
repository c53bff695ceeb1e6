"""What every stage from 03 on reads: the dataset, the frozen base model (SASRec unless cfg.model names another;
the stages use it only through models.RecModel: `item_table()`, `user_repr`, `scores`) and its h_u (cached
once per checkpoint), the model's own ranking of dev and test (cached), and for the concept stages the
dictionary sample. Names saying `sasrec` (sasrec_key, sasrec_outputs) mean the run's base model."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .. import artifacts, metrics, progress
from ..data import Dataset, content_hash
from ..fidelity import masked_scores
from ..models import RecModel
from ..train import checkpoint_path, rank_targets, user_vectors


@dataclass
class StageInputs:
    ds: Dataset
    inst: dict
    model: RecModel                # the frozen base model, read through its interface only
    h: dict[str, torch.Tensor]     # h_u per split (train/dev/test), float32 (n, d)
    mask: tuple
    sasrec_key: str
    h_seconds: float
    train_rows: np.ndarray | None = None   # rows of the full training set kept by `dictionary_sample` (None = all)


def stage_inputs(cfg) -> StageInputs:
    """Dataset, instances, the frozen base model (first seed; trained if missing) and its h_u for every
    train/dev/test instance, computed once in batches and cached as .npy keyed by the checkpoint's content
    and the data's (`sasrec_key`, which every later cache of the run folder is keyed on too)."""
    from .. import data, train

    ds = data.prepare(cfg)
    inst = data.build_instances(ds, cfg.history_max)
    first = replace(cfg, seeds=cfg.seeds[:1])
    run = train.run_seeds(first, ds, inst, progress=False)[cfg.seeds[0]]
    model = run["model"].cpu().eval()  # trained on the GPU when there is one; the later stages read it on CPU
    for p in model.parameters():
        p.requires_grad_(False)
    key = sasrec_key(checkpoint_path(cfg, cfg.seeds[0]), ds)
    t0 = time.time()
    h = cached_hu(model, inst, Path(cfg.run_dir) / "hu", key)
    return StageInputs(ds, inst, model, h, data.user_item_csr(ds), key, time.time() - t0)


def sasrec_key(ckpt: str | Path, ds: Dataset) -> str:
    """The key of everything computed from a base model's checkpoint (h_u, SAE fits, codes, rankings): the
    file's content and the data's, since h_u are these weights applied to these instances."""
    return artifacts.config_hash([artifacts.file_sha256(ckpt), content_hash(ds)])


def cached_hu(model: RecModel, inst: dict, out: Path, key: str) -> dict[str, torch.Tensor]:
    """h_u of every train/dev/test instance under `model`, cached as .npy in `out` keyed by its checkpoint."""
    h = {}
    meta = out / "hu.json"
    fresh = meta.exists() and artifacts.read_json(meta).get("sasrec") == key
    for s in ("train", "dev", "test"):
        f = out / f"{s}.npy"
        if fresh and f.exists():
            h[s] = torch.from_numpy(np.load(f))
        else:
            h[s] = user_vectors(model, inst[s], batch_size=4096, progress=True)
            artifacts.write_npy(f, h[s].numpy())
    artifacts.write_json(meta, {"sasrec": key, "shapes": {s: list(v.shape) for s, v in h.items()}})
    return h


def user_rows(inst) -> np.ndarray:
    """One row per user: each user's last instance (highest position), sorted. A general model's h is the same
    for every instance of a user, so these rows hold each user's vector once."""
    order = np.lexsort((inst.position, inst.user))
    last = np.r_[np.flatnonzero(np.diff(inst.user[order])), len(order) - 1] if len(order) else np.zeros(0, np.int64)
    return np.sort(order[last])


def dictionary_sample(cfg, ctx: StageInputs, acts: dict) -> tuple[StageInputs, dict]:
    """The training instances behind the concept dictionaries (stages 05 and 06): all of them, or past
    `cfg.dict_rows` a seeded uniform sample (sorted, so each user's windows keep their order), applied
    alike to h_u, the instances and the default SAE's train codes. Counts, lifts and enrichments are rates
    over instances, so a million rows estimate them closely, and the stage's memory stops growing with the
    training set. Call it after the SAE fits are loaded: their keys and epochs count the full set.

    A general model (one vector per user) counts each user once: its rows are the users' last training
    instances (`user_rows`: the user's vector and the window of their most recent training items), not every
    instance, which would repeat a heavy user's vector once per interaction (then the cap applies to those)."""
    n = len(ctx.inst["train"])
    rows = None if ctx.model.sequential else user_rows(ctx.inst["train"])
    m = n if rows is None else len(rows)
    if cfg.dict_rows > 0 and m > cfg.dict_rows:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(m, cfg.dict_rows, replace=False))
        progress.step(f"concept dictionaries: a sample of {cfg.dict_rows:,} of {m:,} training "
                      f"{'instances' if rows is None else 'users'} (dict_rows)")
        rows = pick if rows is None else rows[pick]
    elif rows is not None:
        progress.step(f"concept dictionaries: one row per user, {m:,} users of {n:,} training instances")
    if rows is None:
        return ctx, acts
    inst = {**ctx.inst, "train": ctx.inst["train"].subset(rows)}
    h = {**ctx.h, "train": ctx.h["train"][torch.from_numpy(rows)]}
    if "train" in acts:
        acts = {**acts, "train": tuple(np.asarray(a)[rows] for a in acts["train"])}
    return replace(ctx, inst=inst, h=h, train_rows=rows), acts


SCORE_BLOCK = metrics.BLOCK_ENTRIES  # score entries per block of sasrec_outputs; instances x items grows as data squared


def score_blocks(n: int, n_items: int) -> list[slice]:
    """Row blocks over which the (n, n_items) masked scores are built one at a time (one block up to ML-1M
    and Grocery's sizes, so their results are computed exactly as before)."""
    return metrics.row_blocks(n, n_items, SCORE_BLOCK)


@dataclass
class SASRecOutputs:
    ranks: np.ndarray                   # 1-based full-ranking rank of each target, known items masked
    top1: np.ndarray                    # SASRec's top recommendation per instance, known items masked


def sasrec_outputs(cfg, ctx: StageInputs, split: str) -> SASRecOutputs:
    """SASRec's own ranking of one split, computed once per checkpoint: ranks and top-1 items cached in
    <run>/sasrec_outputs/ (keyed by the checkpoint) for stages 04 and 05."""
    E = ctx.model.item_table().detach()
    out = Path(cfg.run_dir) / "sasrec_outputs"
    meta, f_ranks, f_top1 = out / f"{split}.json", out / f"{split}_ranks.npy", out / f"{split}_top1.npy"
    if meta.exists() and artifacts.read_json(meta).get("sasrec") == ctx.sasrec_key and f_ranks.exists() \
            and f_top1.exists():
        return SASRecOutputs(np.load(f_ranks), np.load(f_top1))
    ranks = rank_targets(E, ctx.h[split], ctx.inst[split], ctx.mask)
    h, inst = ctx.h[split], ctx.inst[split]
    top1 = np.concatenate([masked_scores(E, h[b], inst.subset(b), ctx.mask).argmax(1).numpy()
                           for b in score_blocks(len(inst), E.shape[0])] or [np.zeros(0, np.int64)])
    artifacts.write_npy(f_ranks, ranks)
    artifacts.write_npy(f_top1, top1)
    artifacts.write_json(meta, {"sasrec": ctx.sasrec_key, "n": int(len(ranks))})
    return SASRecOutputs(ranks, top1)
