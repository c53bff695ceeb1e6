"""Training and full-ranking evaluation of a base model (SASRec by default), ReChorus style (docs/protocol.md,
"SASRec"; docs/models.md for the others). One loop trains every model of `models.MODELS`: BPR with one
fresh negative per instance per epoch, dev selection, ReChorus early stopping, resumable checkpoints.
Sequential models train on the sequential instances; general ones on every training interaction, as
ReChorus's GeneralModel does.

Everything a batch needs is a contiguous slice of the epoch's histories, targets and negatives, gathered
once per epoch, so the batch path has no per-sample Python. Negatives are redrawn for every instance
each epoch.

Why a batch is fast: with d = 64 and one layer, a batch is a few dozen tiny ops, so per-op dispatch,
autograd bookkeeping and fresh buffers cost more than the arithmetic. `torch.compile` fuses the loss and
its backward into a few generated kernels (same maths, float rounding may differ), and one CPU thread
avoids OpenMP threads spinning while they wait for a core that other processes hold.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm  # text bars: tqdm.auto warns in every kernel without ipywidgets

from . import artifacts, ddp
from .checkpoints import check_finite_loss, early_stop_now, flush_denormals, load_state, state_tensors
from .data import Dataset, Instances, content_hash, user_item_csr
from .metrics import TOPK, mask_known, ranking_metrics, ranks_from_scores
from .models import RecModel, SASRecConfig, build, checkpoint_meta, model_config
from .models import load as load_model
from .progress import step as progress_step


@dataclass
class TrainConfig:
    """The `reference` configuration = ReChorus SASRec as run by the RecSAE authors."""

    lr: float = 1e-4             # --lr
    l2: float = 1e-6             # --l2 (Adam weight_decay on every parameter not named *bias*)
    batch_size: int = 256        # --batch_size
    eval_batch_size: int = 256   # --eval_batch_size
    max_epochs: int = 200        # --epoch
    early_stop: int = 10         # --early_stop (patience, ReChorus rule)
    main_metric: str = "NDCG@5"  # first metric at first topk
    seed: int = 0                # --random_seed
    device: str = "auto"         # "auto" = CUDA when present, else CPU
    # how to run, not what to compute: left out of to_dict(), so checkpoints and cache keys ignore them
    compile: str = "auto"        # torch.compile the batch loss: "on", "off", "auto" = on for long runs
    threads: int = 1             # torch CPU threads while training (0 = leave torch's setting)

    def __post_init__(self):
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"TrainConfig.compile={self.compile!r}: use 'auto', 'on' or 'off'")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in RUN_ONLY:
            d.pop(k)
        return d


RUN_ONLY = ("compile", "threads")
# compiling costs about as much as this many eager steps, so shorter runs ("auto") stay eager
COMPILE_MIN_STEPS = 20_000


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------
# Negatives


def sample_negatives(users: np.ndarray, n_items: int, indptr: np.ndarray, known: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """One uniform negative in 1..n_items-1 per instance, redrawn while it is in the user's train set."""
    neg = rng.integers(1, n_items, size=len(users))
    keys = known.astype(np.int64) + np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)) * n_items
    todo = np.arange(len(users))
    while todo.size:
        k = users[todo] * n_items + neg[todo]
        pos = np.searchsorted(keys, k).clip(max=len(keys) - 1)
        todo = todo[keys[pos] == k]
        neg[todo] = rng.integers(1, n_items, size=todo.size)
    return neg


# ---------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def user_vectors(model: RecModel, inst: Instances, batch_size: int = 1024, device=None,
                 progress: bool = False) -> torch.Tensor:
    """h_u for every instance of `inst`, in batches (n, d) on CPU. This is what the SAE is fitted on. For a
    general model an instance's h is its user's vector (`RecModel.instance_inputs`)."""
    model.eval()
    device = device or next(model.parameters()).device
    x_all = model.instance_inputs(inst)
    out = []
    it = range(0, len(inst), batch_size)
    for s in tqdm(it, desc="h_u", disable=not progress, leave=False):
        x = torch.from_numpy(x_all[s:s + batch_size]).to(device)
        out.append(model.user_repr(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.dim)


@torch.no_grad()
def rank_targets(item_emb: torch.Tensor, h: torch.Tensor, inst: Instances, mask_csr, batch_size: int = 256
                 ) -> np.ndarray:
    """1-based full-ranking rank of each instance's target among all items, ReChorus masking.

    `h` are the user vectors (the SAE's reconstruction can be passed instead of SASRec's own)."""
    indptr, known = mask_csr
    ranks = []
    W = item_emb.to(h.device)
    for s in range(0, len(inst), batch_size):
        hb = h[s:s + batch_size]
        sc = hb @ W.T
        tgt = torch.from_numpy(inst.item[s:s + batch_size]).to(h.device)
        t_score = sc.gather(1, tgt[:, None])[:, 0]
        sc = mask_known(sc.cpu(), inst.user[s:s + batch_size], indptr, known)
        ranks.append(ranks_from_scores(sc, t_score.cpu()))
    return torch.cat(ranks).numpy()


def evaluate(model: RecModel, inst: Instances, mask_csr, h: torch.Tensor | None = None,
             topk=TOPK, batch_size: int = 256) -> dict[str, float]:
    """HR@K / NDCG@K with full ranking. `h` overrides the user vectors (e.g. an SAE reconstruction)."""
    if h is None:
        h = user_vectors(model, inst)
    with torch.no_grad():
        E = model.item_table().detach().cpu()
    return ranking_metrics(rank_targets(E, h.cpu(), inst, mask_csr, batch_size), topk)


# ---------------------------------------------------------------------------------------------------
# Training


def bpr_loss(model: RecModel, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean BPR loss -log sigmoid(s_pos - s_neg) of a batch: the whole training batch path. `x` is the batch's
    `instance_inputs` (histories or user ids); the scores come from the model's `pair_scores`."""
    s_pn = model.pair_scores(x, pos, neg)
    return -F.logsigmoid(s_pn[:, 0] - s_pn[:, 1]).mean()


def training_rows(model: RecModel, ds: Dataset, inst: dict[str, Instances]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, positive items, users) of the training set: the sequential instances for a sequential model,
    every training interaction (first ones included, which have no history) for a general model."""
    if model.sequential:
        tr = inst["train"]
        return tr.hist, tr.item, tr.user
    df = ds.split("train")
    users = df["user_id"].to_numpy().astype(np.int64)
    return users, df["item_id"].to_numpy().astype(np.int64), users


def compiled_loss(model: RecModel, batch: tuple[torch.Tensor, ...]) -> Callable:
    """`bpr_loss` through torch.compile (fixed shapes), tried once on `batch` with its backward; plain
    `bpr_loss` when compiling fails here (no C++ compiler, no triton). The trial leaves no gradients."""
    fn = torch.compile(bpr_loss, dynamic=False)
    try:
        fn(model, *batch).backward()
    except Exception as e:  # noqa: BLE001 - any compiler failure means "train eagerly", never a wrong result
        warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training without it")
        fn = bpr_loss
    model.zero_grad(set_to_none=True)
    return fn


@contextlib.contextmanager
def torch_threads(n: int, device: torch.device):
    """Use `n` torch CPU threads inside the block (CPU only; n = 0 leaves the setting), then restore."""
    old = torch.get_num_threads()
    if n and device.type == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def make_optimizer(model: RecModel, cfg: TrainConfig) -> torch.optim.Adam:
    decay = [p for n, p in model.named_parameters() if "bias" not in n]
    no_decay = [p for n, p in model.named_parameters() if "bias" in n]
    return torch.optim.Adam([{"params": decay, "weight_decay": cfg.l2},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=True)


@dataclass
class TrainResult:
    model: RecModel
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    seconds: float = 0.0


@flush_denormals()
def train_model(ds: Dataset, inst: dict[str, Instances], cfg: TrainConfig, model_cfg=None,
                out_dir: str | Path | None = None, progress: bool = True,
                on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train the model of `model_cfg` (any config of models.MODELS; None = SASRec) with BPR (one fresh negative per instance per epoch), select on dev `main_metric`,
    stop with the ReChorus rule, restore the best weights.

    With `out_dir`, writes `<name>_last.safetensors` (weights + Adam state, every epoch) and
    `<name>.safetensors` (best weights, e.g. sasrec.safetensors) with JSON configs beside them; a killed run resumes from the last
    finished epoch with identical results (per-epoch RNG streams are derived from seed and epoch).
    `seconds` is the training's real time summed over every call that trained (kept in the checkpoint), not
    the time of the last call, which may only have reloaded a finished run. `cfg.compile` and
    `cfg.threads` only choose how the batches run (module docstring)."""
    device = pick_device(cfg.device)
    with torch_threads(cfg.threads, device):
        return _train(ds, inst, cfg, device, model_cfg, out_dir, progress, on_epoch)


train_sasrec = train_model  # the default model: older callers and tests name it so


def _train(ds: Dataset, inst: dict[str, Instances], cfg: TrainConfig, device: torch.device,
           model_cfg, out_dir: str | Path | None, progress: bool,
           on_epoch: Callable[[dict], None] | None) -> TrainResult:
    t0 = time.time()
    spent = 0.0  # seconds of earlier calls on this checkpoint
    seed_everything(cfg.seed)
    model_cfg = model_cfg or SASRecConfig(n_items=ds.n_items)
    model = build(model_cfg, ds).to(device)
    opt = make_optimizer(model, cfg)
    batch_loss = ddp.wrap(model, bpr_loss)  # under torchrun: DDP, gradients summed over the ranks
    train_csr = user_item_csr(ds, ("train",))
    mask_csr = user_item_csr(ds)
    x_tr, pos_tr, user_tr = training_rows(model, ds, inst)
    history: list[dict] = []
    crit: list[float] = []
    best_state = None
    best_epoch = 0
    start_epoch = 1
    meta = {**checkpoint_meta(model), "train": cfg.to_dict(), "dataset": ds.name, "data": content_hash(ds)}
    out = Path(out_dir) if out_dir else None
    last_file, best_file = f"{model.name}_last.safetensors", f"{model.name}.safetensors"
    resume = artifacts.load_resumable(out / last_file, out / best_file) if out else None
    if resume is not None:
        (tensors, saved), best = resume
        if all(saved.get(k) == meta[k] for k in ("model", "train", "data")):  # else another config or data: start over
            load_state(model, opt, tensors)
            history, best_epoch = saved["history"], saved["best_epoch"]
            spent = saved.get("seconds", sum(r["train_seconds"] + r["eval_seconds"] for r in history))
            crit = [row["dev"][cfg.main_metric] for row in history]
            start_epoch = len(history) + 1
            best_state = best[0] if best is not None else None
    done = bool(crit) and early_stop_now(crit, cfg.early_stop)
    n, bs = len(pos_tr), cfg.batch_size
    # decided from the config alone, so a resumed run takes the same path as an uninterrupted one
    world = ddp.rank_world()[1]
    # compiling is measured for SASRec only (module docstring); the other models train eagerly
    use_compile = world == 1 and model.name == "sasrec" and (cfg.compile == "on" or
                                  (cfg.compile == "auto" and (n // bs) * cfg.max_epochs >= COMPILE_MIN_STEPS))
    full_loss: Callable = bpr_loss  # the loss of full batches; a last, shorter batch always runs eagerly
    trained = False
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        if done:
            break
        te = time.time()
        rng = np.random.default_rng([cfg.seed, epoch])
        neg = sample_negatives(user_tr, ds.n_items, *train_csr, rng)
        perm = rng.permutation(n)
        hist, pos, neg = (torch.from_numpy(a[perm]).to(device) for a in (x_tr, pos_tr, neg))
        model.train()
        if use_compile and full_loss is bpr_loss and n >= bs:
            full_loss = compiled_loss(model, (hist[:bs], pos[:bs], neg[:bs]))
            use_compile = False  # tried once: compiled, or failed and stays eager
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        bar = tqdm(range(0, n, bs), desc=f"epoch {epoch}", disable=not progress, leave=False, mininterval=1.0)
        for s in bar:
            if world == 1:
                loss_fn = full_loss if s + bs <= n else bpr_loss
                loss = loss_fn(model, hist[s:s + bs], pos[s:s + bs], neg[s:s + bs])
            else:  # under torchrun: this rank's rows of the global batch; DDP sums the gradients
                idx, share = ddp.shard(torch.arange(s, min(s + bs, n), device=device))
                loss = batch_loss(hist[idx], pos[idx], neg[idx]) * share
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double()
        train_s = time.time() - te
        loss_mean = float(ddp.all_sum(loss_sum).cpu()) / len(bar)
        check_finite_loss(loss_mean, f"{model.label} (seed {cfg.seed})", epoch, f"RECSAE_LR={cfg.lr:g}")
        te = time.time()
        dev = evaluate(model, inst["dev"], mask_csr, batch_size=cfg.eval_batch_size)
        row = {"epoch": epoch, "loss": loss_mean, "dev": dev,
               "train_seconds": train_s, "eval_seconds": time.time() - te}
        history.append(row)
        crit.append(dev[cfg.main_metric])
        if crit[-1] == max(crit):  # ReChorus saves whenever the latest equals the best so far
            best_epoch = epoch
            best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
            if out:
                artifacts.save_weights(out / best_file, best_state,
                                       {**meta, "best_epoch": best_epoch, "dev": dev})
        trained = True
        if out:
            artifacts.save_weights(out / last_file, state_tensors(model, opt),
                                   {**meta, "history": history, "best_epoch": best_epoch,
                                    "seconds": spent + time.time() - t0})
        if on_epoch:
            on_epoch(row)
        line = (f"epoch {epoch:3d}/{cfg.max_epochs} loss {row['loss']:.4f} dev {cfg.main_metric} {crit[-1]:.4f} "
                f"({train_s:.1f}s + {row['eval_seconds']:.1f}s)")
        progress_step(f"{model.label} seed {cfg.seed} {line}")
        if progress:
            tqdm.write(line)
        done = early_stop_now(crit, cfg.early_stop)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, best_epoch, spent + (time.time() - t0 if trained else 0.0))


def load_sasrec(path: str | Path, device: str = "cpu") -> RecModel:
    """A SASRec (or GRU4Rec, BPRMF) checkpoint back; LightGCN also needs its data: models.load(path, ds)."""
    return load_model(path, None, device)


# ---------------------------------------------------------------------------------------------------
# The notebook stage: train (or reuse) one model (cfg.model, SASRec by default) per seed and report


def train_config(cfg) -> tuple[TrainConfig, dict]:
    """TrainConfig + the model's shape fields from a RunConfig (config.py is the one place for parameters)."""
    tc = TrainConfig(lr=cfg.lr, l2=cfg.l2, batch_size=cfg.batch_size, max_epochs=cfg.max_epochs,
                     early_stop=cfg.early_stop, device=cfg.device)
    return tc, {"d_model": cfg.d_model, "history_max": cfg.history_max}


def checkpoint_path(cfg, seed: int) -> Path:
    """Best weights of seed `seed` of the run's model: <run>/<model>/seed<N>/<model>.safetensors (so SASRec's
    stay at <run>/sasrec/seed<N>/sasrec.safetensors)."""
    return Path(cfg.run_dir) / cfg.model / f"seed{seed}" / f"{cfg.model}.safetensors"


def run_seeds(cfg, ds: Dataset, inst: dict[str, Instances], progress: bool = True) -> dict:
    """Train one model per seed in cfg.seeds (reusing finished ones), evaluate dev and test.

    Returns {seed: {"model", "history", "best_epoch", "seconds", "dev", "test"}}. A finished seed leaves
    `done.json` beside its checkpoint, keyed on the training config and the data's content
    (`data.content_hash`); an unfinished one resumes from `<model>_last.safetensors`; a damaged checkpoint is
    trained again. The key holds the model's config, which names no model, so SASRec's keys are what they
    were before the other models came (the folder names the model)."""
    base, shape = train_config(cfg)
    mask = user_item_csr(ds)
    out = {}
    for seed in cfg.seeds:
        tc = TrainConfig(**{**base.to_dict(), "seed": seed})
        mc = model_config(cfg.model, ds, **shape)
        ckpt = checkpoint_path(cfg, seed)
        d = ckpt.parent
        done = d / "done.json"
        key = artifacts.config_hash([tc.to_dict(), mc.to_dict(), content_hash(ds)])
        model = None
        if done.exists() and artifacts.read_json(done).get("key") == key:
            res = artifacts.read_json(done)
            try:
                model = load_model(ckpt, ds)
            except (artifacts.CheckpointError, FileNotFoundError) as e:  # damaged or gone: train it again
                progress_step(f"{cfg.model} seed {seed}: {e}; training it again")
                for f in d.glob(f"{cfg.model}*.safetensors"):
                    f.unlink()
        if model is None:
            r = train_model(ds, inst, tc, mc, out_dir=d, progress=progress)
            model = r.model
            res = {"key": key, "history": r.history, "best_epoch": r.best_epoch, "seconds": r.seconds,
                   "epochs_run": len(r.history),
                   "train_seconds_per_epoch": float(np.mean([h["train_seconds"] for h in r.history])),
                   "eval_seconds_per_epoch": float(np.mean([h["eval_seconds"] for h in r.history])),
                   "dev": evaluate(model, inst["dev"], mask), "test": evaluate(model, inst["test"], mask)}
            artifacts.write_json(done, res)
        out[seed] = {**res, "model": model}
    return out
