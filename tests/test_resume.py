"""Resume is exact wherever a checkpoint write is interrupted: SASRec and the SAE are killed at every rename
of one epoch's checkpoint (before and after it), resumed, and must end with an uninterrupted run's weights.
Checkpoints written before weights carried their config still load, and a fit's recorded time is its real
time, not the time of the call that only reloaded it."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from recsae_utils import artifacts, train
from recsae_utils import sae as S


class Killed(BaseException):
    """Stands for a SIGKILL: not an Exception, so nothing on the way catches it."""


def renames(monkeypatch, kill: tuple[int, bool] | None = None) -> list[str]:
    """Record the target of every os.replace (each atomic write's commit); with kill=(n, after), the n-th
    raises Killed just before (after=False) or just after (after=True) it renames."""
    real, seen = os.replace, []

    def replace(src, dst):
        i = len(seen)
        seen.append(os.path.basename(dst))
        if kill and kill == (i, False):
            raise Killed
        real(src, dst)
        if kill and kill == (i, True):
            raise Killed

    monkeypatch.setattr(os, "replace", replace)
    return seen


def epoch_window(names: list[str], last: str, epoch: int) -> range:
    """Indices of the renames that make up checkpoint `epoch` (they end with `last`, the JSON copy)."""
    ends = [i for i, n in enumerate(names) if n == last]
    return range(ends[epoch - 2] + 1 if epoch > 1 else 0, ends[epoch - 1] + 1)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_every_kill_point(monkeypatch, tmp_path, fit, last_json: str, check) -> None:
    """fit(out_dir) uninterrupted, then killed before and after each rename of epoch 2's checkpoint and
    resumed; check(resumed, full, where, out_dir) compares the two."""
    names = renames(monkeypatch)
    full = fit(tmp_path / "full")
    monkeypatch.undo()
    window = epoch_window(names, last_json, 2)
    assert last_json.replace(".json", ".safetensors") in names[window.start:window.stop]
    for i in window:
        for after in (False, True):
            out = tmp_path / f"k{i}{'a' if after else 'b'}"
            renames(monkeypatch, kill=(i, after))
            with pytest.raises(Killed):
                fit(out)
            monkeypatch.undo()
            check(fit(out), full, f"killed {'after' if after else 'before'} renaming {names[i]} (rename {i})", out)


# ---------------------------------------------------------------------------------------------------
# SASRec

CFG = train.TrainConfig(lr=3e-3, batch_size=64, max_epochs=3, early_stop=3, seed=0, device="cpu")


def test_sasrec_resume_exact_at_every_kill_point(tmp_path, monkeypatch, tiny_ds, tiny_inst):
    def check(res, full, where, out):
        assert [r["dev"] for r in res.history] == [r["dev"] for r in full.history], where
        assert res.best_epoch == full.best_epoch, where
        assert same_state(res.model.state_dict(), full.model.state_dict()), where
        assert same_state(train.load_sasrec(out / "sasrec.safetensors").state_dict(),  # the exported best too
                          full.model.state_dict()), where

    check_every_kill_point(monkeypatch, tmp_path, lambda out: train.train_sasrec(
        tiny_ds, tiny_inst, CFG, out_dir=out, progress=False), "sasrec_last.json", check)


# ---------------------------------------------------------------------------------------------------
# SAE


def sae_data(n=2_000, d=16):
    g = torch.Generator().manual_seed(0)
    return torch.relu(torch.randn(n, 8, generator=g)) @ torch.randn(8, d, generator=g)


SAE_CFG = S.SAEConfig(d_in=16, n_latents=64, k=3, k_aux=8, batch_size=256, epochs=3, dead_window=2_000)


def select_on(held):
    def select(sae):
        x_hat = S.reconstruct(sae, held)
        return {"fvu": float(S.fvu_loss(held, x_hat)), "score": -float(S.fvu_loss(held, x_hat))}
    return select


def test_sae_resume_exact_at_every_kill_point(tmp_path, monkeypatch):
    x = sae_data()
    select = select_on(x[:300])

    def check(res, full, where, out):
        assert len(res.history) == len(full.history) and res.best_epoch == full.best_epoch, where
        assert same_state(res.sae.state_dict(), full.sae.state_dict()), where

    check_every_kill_point(monkeypatch, tmp_path, lambda out: S.fit_sae(
        x, SAE_CFG, select_fn=select, select_key="score", out_dir=out, progress=False), "sae_last.json", check)


def test_old_checkpoints_without_embedded_config_still_resume(tmp_path):
    """Checkpoints from before the config moved into the weights file (JSON beside it only) still resume."""
    x = sae_data()
    select = select_on(x[:300])
    full = S.fit_sae(x, SAE_CFG, select_fn=select, select_key="score", progress=False)
    short = S.SAEConfig(**{**SAE_CFG.to_dict(), "epochs": 2})  # constant lr: `epochs` is not in the resume key
    S.fit_sae(x, short, select_fn=select, select_key="score", out_dir=tmp_path, progress=False)
    last = tmp_path / "sae_last.safetensors"
    tensors, meta = artifacts.load_weights(last)
    save_file(tensors, str(last))  # the old format: no metadata
    meta.pop("seconds")            # nor a recorded fit time
    artifacts.write_json(last.with_suffix(".json"), meta)
    assert artifacts.load_weights(last)[1] == meta
    res = S.fit_sae(x, SAE_CFG, select_fn=select, select_key="score", out_dir=tmp_path, progress=False)
    assert len(res.history) == 3 and same_state(res.sae.state_dict(), full.sae.state_dict())


def test_fit_seconds_are_the_fits_real_time(tmp_path):
    x = sae_data()
    select = select_on(x[:300])
    first = S.fit_sae(x, SAE_CFG, select_fn=select, select_key="score", out_dir=tmp_path, progress=False)
    epochs = sum(r["seconds"] for r in first.history)
    assert first.seconds >= epochs > 0
    again = S.fit_sae(x, SAE_CFG, select_fn=select, select_key="score", out_dir=tmp_path, progress=False)
    recorded = artifacts.load_weights(tmp_path / "sae_last.safetensors")[1]["seconds"]
    assert again.seconds == recorded and recorded >= epochs  # a reload reports the fit, not itself
    # a checkpoint without a recorded time: the epochs' own seconds
    last = tmp_path / "sae_last.safetensors"
    tensors, meta = artifacts.load_weights(last)
    meta.pop("seconds")
    artifacts.save_weights(last, tensors, meta)
    assert S.fit_sae(x, SAE_CFG, select_fn=select, select_key="score", out_dir=tmp_path,
                     progress=False).seconds == pytest.approx(epochs)


def test_sasrec_seconds_survive_a_reload(tmp_path, tiny_ds, tiny_inst):
    cfg = train.TrainConfig(**{**CFG.to_dict(), "max_epochs": 2})
    first = train.train_sasrec(tiny_ds, tiny_inst, cfg, out_dir=tmp_path, progress=False)
    again = train.train_sasrec(tiny_ds, tiny_inst, cfg, out_dir=tmp_path, progress=False)
    epochs = sum(r["train_seconds"] + r["eval_seconds"] for r in first.history)
    assert first.seconds >= epochs > 0 and again.seconds >= epochs and not again.history[2:]
