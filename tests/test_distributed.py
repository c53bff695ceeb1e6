"""torchrun + DDP (recsae_utils.distributed): two CPU processes (gloo) train the SASRec and the SAEs that one
process trains, within float tolerance; only rank 0 writes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from recsae_utils import artifacts, ddp, distributed
from recsae_utils.model import SASRec, SASRecConfig

REPO = Path(__file__).resolve().parent.parent
# 1,346 tiny training instances in batches of 269: every batch splits 135/134 over two ranks, and the last
# one has a single row, so rank 1 runs that step on a padding row with share 0
ENV = {"RECSAE_MAX_EPOCHS": "2", "RECSAE_BATCH_SIZE": "269", "RECSAE_LR": "3e-3", "RECSAE_SAE_EPOCHS": "3",
       "RECSAE_ABLATIONS": "1"}  # the reference-variant SAE too
ATOL = 1e-5
pytestmark = pytest.mark.usefixtures("one_thread")   # the ranks' sums and one process's alike


def _env(tiny_root: Path, run_root: Path) -> dict[str, str]:
    return {**ENV, "RECSAE_DATA_DIR": str(tiny_root), "RECSAE_RUN_ROOT": str(run_root),
            "RECSAE_REPORT_ROOT": str(run_root / "reports"), "RECSAE_CACHE_DIR": str(run_root / "cache")}


def _single(monkeypatch, tiny_root: Path, run_root: Path, stages: str) -> None:
    """The entry point in this process: no process group, so one process trains the whole batch."""
    for k, v in _env(tiny_root, run_root).items():
        monkeypatch.setenv(k, v)
    assert distributed.main(["ml-1m", "--profile", "tiny", "--stages", stages]) == 0


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return artifacts.load_weights(path)[0]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _close(a, b, path: str = "") -> None:
    """Nested JSON of two runs equal, floats within ATOL (timings skipped)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            if "seconds" not in k:
                _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=ATOL), path
    else:
        assert a == b, path


def test_two_processes_train_what_one_process_trains(tmp_path, tiny_root, monkeypatch):
    two = tmp_path / "two"
    env = {**os.environ, **_env(tiny_root, two), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "recsae_utils.distributed", "ml-1m", "--profile", "tiny"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es), backend gloo" in proc.stdout

    # SASRec: one process from scratch against the two
    one = tmp_path / "one"
    _single(monkeypatch, tiny_root, one, "sasrec")
    seed0 = Path("ml-1m/sasrec/seed0")
    a, b = _weights(one / seed0 / "sasrec_last.safetensors"), _weights(two / seed0 / "sasrec_last.safetensors")
    assert _max_diff(a, b) < ATOL  # weights and Adam moments (the unused key bias has none in either)
    # every trained tensor moved far more than the tolerance, so the check is not vacuous
    torch.manual_seed(0)  # train.seed_everything, then the model: its initial weights
    init = SASRec(SASRecConfig(n_items=a["model.item_emb.weight"].shape[0])).state_dict()
    assert min(float((a[f"model.{k}"] - v).abs().max()) for k, v in init.items() if "k.bias" not in k) > 100 * ATOL
    da, db = (artifacts.read_json(r / seed0 / "done.json") for r in (one, two))
    _close({k: da[k] for k in ("history", "best_epoch", "dev", "test")},
           {k: db[k] for k in ("history", "best_epoch", "dev", "test")})

    # SAE: one process on the two-process run's SASRec and h_u (identical inputs), all three fits
    sae_one = tmp_path / "sae_one"
    shutil.copytree(two / "ml-1m", sae_one / "ml-1m", ignore=shutil.ignore_patterns("sae", ".lock"))
    _single(monkeypatch, tiny_root, sae_one, "sae")
    fits = sorted(p.name for p in (two / "ml-1m" / "sae").iterdir())
    assert fits == ["m32_k2_openai", "m64_k4_openai", "m64_k4_reference"]
    for fit in fits:
        d = Path("ml-1m/sae") / fit
        a, b = (_weights(r / d / "sae_last.safetensors") for r in (sae_one, two))
        assert _max_diff(a, b) < ATOL
        ha, hb = (artifacts.read_json(r / d / "done.json") for r in (sae_one, two))
        _close({k: ha[k] for k in ("history", "best_epoch")}, {k: hb[k] for k in ("history", "best_epoch")})
        assert max(row["aux"] for row in ha["history"]) > 0  # the AuxK path (all-reduced dead set) was used
    assert not list(two.rglob(artifacts.TEMP_GLOB))


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    """A rank other than 0 computes an artifact but never writes it (the same file is rank 0's to write)."""
    rank1 = types.SimpleNamespace(is_available=lambda: True, is_initialized=lambda: True, get_rank=lambda: 1)
    monkeypatch.setitem(sys.modules, "torch.distributed", rank1)
    artifacts.write_json(tmp_path / "x.json", {"a": 1})
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(rank1, "get_rank", lambda: 0)
    artifacts.write_json(tmp_path / "x.json", {"a": 1})
    assert artifacts.read_json(tmp_path / "x.json") == {"a": 1}


def test_one_process_shard_and_reductions_are_identities():
    rows = torch.arange(7)
    mine, share = ddp.shard(rows)
    assert mine is rows and share == 1.0
    t = torch.tensor([1.5, 2.0])
    assert ddp.all_sum(t) is t and ddp.rank_world() == (0, 1)
    ids = torch.tensor([3, 3, 1])
    assert ddp.union(ids, 5) is ids
