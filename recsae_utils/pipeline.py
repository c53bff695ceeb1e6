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
AS_GIVEN: dict[str, str] = {}  # paths as the user typed them, for the command recorded in run.json


# The config fields each stage reads (with everything upstream): a change reruns that stage and the
# ones after it, nothing before.
STAGE_FIELDS = {
    "01": ["dataset", "data_dir", "history_max"],
    "02": ["seeds", "d_model", "lr", "l2", "batch_size", "max_epochs", "early_stop"],
    "03": ["sae_latents", "sae_k", "sae_alt_latents", "sae_alt_k", "sae_samples", "sae_epochs", "sae_lr", "sae_batch_size",
           "sae_variant", "sae_dead_window", "sae_aux_coef", "sae_aux_relu", "sae_lr_decay", "sae_l2", "seed"],
    "04": [],
    "05": ["top_n", "item_pool", "labeler", "llm_model", "llm_budget_tokens"],
}


def notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def _source_hash() -> str:
    h = hashlib.sha256()
    for p in sorted((artifacts.repo_root() / "recsae_utils").glob("*.py")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _data_hash(cfg: config.RunConfig) -> str:
    """The data source actually read (zip checksum or the input files' contents): see sources.source_fingerprint."""
    from .sources import source_fingerprint

    return source_fingerprint(cfg.data_source, cfg.dataset)


def run_dataset(dataset: str, profile: str | None = None, force: bool = False, log=print,
                until: str | None = None) -> list[dict]:
    cfg = config.load(dataset, profile)
    out_dir = cfg.report_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = cfg.run_dir / "stages.json"
    state = artifacts.read_json(state_path) if state_path.exists() else {}
    params = {"dataset": dataset, "profile": cfg.profile}
    upstream = artifacts.config_hash([_source_hash(), _data_hash(cfg), params])
    cfg_dict = cfg.to_dict()
    rows = []
    for nb in notebooks():
        if until and nb.name[:2] > until:
            break
        fields = {f: cfg_dict[f] for f in STAGE_FIELDS.get(nb.name[:2], list(cfg_dict))}
        key = artifacts.config_hash([upstream, nb.read_bytes().decode("utf-8"), fields])
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
    _write_run_record(cfg, rows)
    from .reports import write_report

    write_report(cfg.report_dir)
    return rows


def _write_run_record(cfg: config.RunConfig, rows: list[dict]) -> None:
    """reports/<dataset>/run.json: the command, config, code version, data checksums and stage times
    behind the committed report, so anyone can rerun it."""
    import platform
    import subprocess

    import torch

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=artifacts.repo_root()).stdout.strip()
    except OSError:
        rev = ""
    manifest = cfg.run_dir / "data" / "manifest.json"
    env = {k: AS_GIVEN.get(k, v) for k, v in os.environ.items() if k.startswith("RECSAE_") or k == "OPENAI_BASE_URL"}
    artifacts.write_json(cfg.report_dir / "run.json", {
        "command": f"{' '.join(f'{k}={v}' for k, v in sorted(env.items()))} make all DATASETS={cfg.dataset}".strip(),
        "argv": sys.argv, "config": cfg.to_dict(), "git_commit": rev,
        "data": artifacts.read_json(manifest).get("source_sha256") if manifest.exists() else None,
        "stages": rows, "python": platform.python_version(), "torch": torch.__version__,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
    })


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
    ap.add_argument("--until", default=None, help="stop after this stage number, e.g. 02")
    args = ap.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    for var in ("RECSAE_DATA_DIR", "RECSAE_RUN_DIR", "RECSAE_REPORT_DIR"):  # notebooks run in notebooks/
        if os.environ.get(var):
            AS_GIVEN[var] = os.environ[var]
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())
    rows = []
    t0 = time.time()
    for ds in args.datasets:
        rows += run_dataset(ds, args.profile, args.force, until=args.until)
    print("\n| dataset | stage | status | seconds |\n|---|---|---|---:|")
    for r in rows:
        print(f"| {r['dataset']} | {r['stage']} | {r['status']} | {r['seconds']:.1f} |")
    print(f"| all | | | {time.time() - t0:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
