"""Run folders and atomic artifact I/O.

Every artifact is written to a temp file beside its target (`.<name>.<random>.tmp`) and then renamed, so a
run that is killed half way never leaves a truncated file that a later run would trust; a SIGKILL can
leave the temp file itself, which `remove_stale_temp` clears (the pipeline does, under its run lock).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def run_dir(dataset: str, root: str | os.PathLike) -> Path:
    """The one folder that holds every artifact of a dataset's run: <root>/<dataset> (config.RunConfig.run_dir
    chooses the root)."""
    path = Path(root) / dataset
    path.mkdir(parents=True, exist_ok=True)
    return path


def _file_mode() -> int:
    """The mode open() would give a new file (0o666 minus the umask); mkstemp's temp files are 0600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


TEMP_GLOB = ".*.tmp"  # what atomic_path leaves behind only when the process is killed (see .gitignore)


def _writes() -> bool:
    """False on the ranks other than 0 of a torchrun job (recsae_utils.distributed): every rank computes the
    same artifacts and rank 0 alone writes them. Looked up without importing torch."""
    dist = sys.modules.get("torch.distributed")
    return dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    if not _writes():
        with tempfile.TemporaryDirectory() as scratch:  # rank != 0 under torchrun: computed, never written
            yield Path(scratch) / path.name
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_stale_temp(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files of interrupted atomic writes under `folder`. Only safe while no other process
    writes there (the pipeline holds the run lock)."""
    folder = Path(folder)
    stale = [p for p in folder.rglob(TEMP_GLOB) if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, to_json(obj))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | os.PathLike, df) -> Path:
    """A pandas DataFrame or a pyarrow Table, atomically."""
    with atomic_path(path) as tmp:
        if hasattr(df, "to_parquet"):
            df.to_parquet(tmp, index=False)
        else:
            import pyarrow.parquet as pq

            pq.write_table(df, tmp)
    return Path(path)


def write_npy(path: str | os.PathLike, arr: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
    return Path(path)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able config: a changed parameter gives a new hash."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


def save_weights(path: str | os.PathLike, tensors: dict, config: dict) -> Path:
    """safetensors weights with their config inside (header metadata), then `<name>.json`, a readable copy.

    The weights file's rename is the checkpoint's one commit point: weights and config can never come
    from two different epochs, wherever a run is killed (two files renamed one after the other could)."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={"config": to_json(config)})
    write_json(path.with_suffix(".json"), config)
    return path


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (cut short, damaged, not safetensors): the message names it."""


def load_weights(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensors, config). The config comes from the weights file; files written before it carried one
    have only the JSON beside them, which is then read. A damaged file raises CheckpointError naming it
    (safetensors' own error, e.g. "incomplete metadata", names no file)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:  # one open: tensors and config from the same file
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        config = json.loads(meta["config"]) if "config" in meta else read_json(path.with_suffix(".json"))
    except (SafetensorError, ValueError, OSError) as e:
        if isinstance(e, FileNotFoundError) and not path.exists():
            raise
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it, or rerun "
                              "the pipeline (it trains a damaged model again)") from None
    return tensors, config


def load_resumable(last: str | os.PathLike, best: str | os.PathLike) -> tuple[tuple, tuple | None] | None:
    """(load_weights(last), load_weights(best) or None) of a training's resume point, or None when there is
    none or either file is damaged (the training then starts over instead of failing on it)."""
    if not Path(last).exists():
        return None
    try:
        return load_weights(last), (load_weights(best) if Path(best).exists() else None)
    except CheckpointError as e:
        print(f"note: {e}: starting this training over", flush=True)
        return None
