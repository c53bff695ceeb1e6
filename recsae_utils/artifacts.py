"""Run folders and atomic artifact I/O.

Every artifact is written to a temp file beside its target and then renamed, so a run that is killed
half way never leaves a truncated file that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def run_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """The one folder that holds every artifact of a dataset's run (RECSAE_RUN_DIR overrides the root)."""
    base = Path(root or os.environ.get("RECSAE_RUN_DIR") or repo_root() / "runs")
    path = base / dataset
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
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
    """safetensors weights plus `<name>.json` config beside them, both written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    write_json(path.with_suffix(".json"), config)
    return path


def load_weights(path: str | os.PathLike) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    path = Path(path)
    return load_file(str(path)), read_json(path.with_suffix(".json"))
