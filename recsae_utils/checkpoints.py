"""What SASRec's trainer (train.py) and the SAE's fit loop (sae.fit) share: resumable checkpoints of a model
and its Adam state, ReChorus's early-stopping rule, and the guards every training loop runs under (subnormal
floats flushed, a non-finite loss stopped before it is saved). Neutral ground, so neither trainer imports
the other."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn


@contextlib.contextmanager
def flush_denormals():
    """Treat subnormal floats as zero inside the block, then restore; every training loop is decorated with it.

    Adam's second moments and small gradients drift into the subnormal range after a few epochs, and x86
    CPUs compute on subnormals many times slower, so epochs would slow down as training goes on. Values that
    small change no ranking."""
    flushing = torch.set_flush_denormal(True)  # False where the CPU cannot flush; then nothing changes
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)


class TrainingDiverged(ArithmeticError):
    """The training loss became NaN or infinite: every later number would be meaningless."""


def check_finite_loss(loss: float, what: str, epoch: int, setting: str) -> None:
    """Stop a training whose loss is not finite, naming the model, the epoch and the setting to lower, before
    a diverged epoch is evaluated or saved (its NaN scores would otherwise rank every target first)."""
    if not np.isfinite(loss):
        raise TrainingDiverged(f"{what} diverged at epoch {epoch}: the training loss is {loss}. Lower the "
                               f"learning rate ({setting}) or look for NaN in its input, and rerun; nothing of "
                               "this epoch was saved.")


def early_stop_now(history: list[float], patience: int) -> bool:
    """ReChorus BaseRunner.eval_termination: the last `patience` dev values never increase, or the best
    value is more than `patience` epochs old."""
    if len(history) > patience and all(a >= b for a, b in zip(history[-patience:], history[-patience + 1:])):
        return True
    return len(history) - history.index(max(history)) > patience


def state_tensors(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The weights (`model.<name>`) and Adam's moments and step count per parameter (`adam.<name>.<key>`) as
    flat tensors, so a killed fit restarts from the last epoch exactly as if it had never stopped."""
    t = {f"model.{k}": v for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    t[f"adam.{names[id(p)]}.{key}"] = st[key]
            if "step" in st:
                t[f"adam.{names[id(p)]}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
    return t


def load_state(model: nn.Module, opt: torch.optim.Optimizer, t: dict[str, torch.Tensor]) -> None:
    """Put `state_tensors`' weights and Adam state back into `model` and `opt` (on the parameters' device)."""
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    params = dict(model.named_parameters())
    for n, p in params.items():
        if f"adam.{n}.exp_avg" in t:
            opt.state[p] = {"step": t[f"adam.{n}.step"].reshape(()).to(p.device).clone(),  # fused Adam: same device
                            "exp_avg": t[f"adam.{n}.exp_avg"].to(p.device).clone(),
                            "exp_avg_sq": t[f"adam.{n}.exp_avg_sq"].to(p.device).clone()}
