"""`make all`: run the numbered notebooks headless with papermill, dataset by dataset.

Each stage is one notebook. Its key hashes the notebook, the package source, the parameters and the keys
of the stages before it; a stage whose key matches the last successful run (and whose executed notebook
still exists) is reused, anything downstream of a change runs again. Executed notebooks go to
reports/<dataset>/notebooks/. A failing notebook stops the run with the notebook, the cell and the error.

    python -m recsae_utils.pipeline ml-1m grocery [--profile tiny] [--force]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

from . import artifacts, config

NOTEBOOK_DIR = artifacts.repo_root() / "notebooks"


def notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def _source_hash() -> str:
    h = hashlib.sha256()
    for p in sorted((artifacts.repo_root() / "recsae_utils").glob("*.py")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _data_hash(cfg: config.RunConfig) -> str:
    """Size + mtime of the dataset's input files: cheap, and changes whenever the data does."""
    src = cfg.data_source
    if src is None:
        return "download"
    folder = src / ("ml-1m" if cfg.dataset == "ml-1m" else config_folder(cfg.dataset))
    parts = [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in sorted(folder.glob("*")) if p.is_file()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def config_folder(dataset: str) -> str:
    from .data import DATASETS

    return DATASETS.get(dataset, dataset)


def run_dataset(dataset: str, profile: str | None = None, force: bool = False, log=print) -> list[dict]:
    cfg = config.load(dataset, profile)
    out_dir = cfg.report_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = cfg.run_dir / "stages.json"
    state = artifacts.read_json(state_path) if state_path.exists() else {}
    params = {"dataset": dataset, "profile": cfg.profile}
    upstream = artifacts.config_hash([cfg.to_dict(), _source_hash(), _data_hash(cfg)])
    rows = []
    for nb in notebooks():
        key = artifacts.config_hash([upstream, nb.read_bytes().decode("utf-8"), params])
        out_nb = out_dir / nb.name
        t0 = time.time()
        if not force and state.get(nb.name) == key and out_nb.exists():
            status = "reused"
        else:
            log(f"[{dataset}] {nb.name} ...")
            _execute(nb, out_nb, params)
            state[nb.name] = key
            artifacts.write_json(state_path, state)
            status = "ran"
        secs = time.time() - t0
        rows.append({"dataset": dataset, "stage": nb.stem, "status": status, "seconds": secs})
        log(f"[{dataset}] {nb.name}: {status} in {secs:.1f}s")
        upstream = key
    return rows


def _execute(nb: Path, out_nb: Path, params: dict) -> None:
    import papermill as pm

    try:
        pm.execute_notebook(str(nb), str(out_nb), parameters=params, cwd=str(NOTEBOOK_DIR), progress_bar=False,
                            kernel_name="python3")
    except pm.PapermillExecutionError as e:
        msg = (f"\nNotebook failed: {nb.name} (executed copy: {out_nb})\n"
               f"  cell {e.exec_count}: {e.ename}: {e.evalue}\n")
        raise SystemExit(msg) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="*", default=["ml-1m"])
    ap.add_argument("--profile", default=None, help="full (default) or tiny; env RECSAE_PROFILE")
    ap.add_argument("--force", action="store_true", help="run every stage even if unchanged")
    args = ap.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    rows = []
    t0 = time.time()
    for ds in args.datasets:
        rows += run_dataset(ds, args.profile, args.force)
    print("\n| dataset | stage | status | seconds |\n|---|---|---|---:|")
    for r in rows:
        print(f"| {r['dataset']} | {r['stage']} | {r['status']} | {r['seconds']:.1f} |")
    print(f"| all | | | {time.time() - t0:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
