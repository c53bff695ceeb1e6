"""`make all`: run the numbered notebooks headless with papermill, dataset by dataset.

Each stage is one notebook. Its key hashes the notebook, the source of the recsae_utils modules it really
uses (its imports, followed through the package), the config fields that code reads (`stage_fields`), the
data's fingerprint and the key of the stage before it; so a change in browser.py reruns stages 05-06 (both use it) and one in the sae package stages 03-07.

What a rerun trusts: a stage counts as done only when it finished. Its key goes into
runs/<dataset>/stages.json after the notebook ran to the end, and the executed notebook moves into
reports/<dataset>/notebooks/ only then; a stage that fails (its executed copy goes to
runs/<dataset>/failed/) or is killed leaves no key, so the next run redoes it and everything after it,
and reports/ keeps the last good notebook. One run at a time per run folder and per report folder:
runs/<dataset>/.lock and reports/<dataset>/.lock.

    python -m recsae_utils.pipeline ml-1m grocery [--profile tiny] [--force]

With RECSAE_MODELS=sasrec,gru4rec,... each dataset runs every stage once per model, in that order (each
as RECSAE_MODEL=<model> would, into its own folders), then `model_comparison` writes the dataset's
reports/<dataset>/models.md and models.json from the models' summaries.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import math
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from . import artifacts, config
from .redaction import redact

NOTEBOOK_DIR = artifacts.repo_root() / "notebooks"
PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


class StageFailed(SystemExit):
    """A notebook failed: the message names it, the cell, the error and where its executed copy is."""


def notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


# ---------------------------------------------------------------------------------------------------
# Stage keys from the code each notebook uses


def _read_source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def notebook_code(nb: Path) -> str:
    """The code cells of a notebook as one Python source (IPython magics and shell lines dropped)."""
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    lines = []
    for c in cells:
        if c.get("cell_type") == "code":
            src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            lines += [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


@functools.lru_cache(maxsize=256)
def _scan(source: str) -> tuple[tuple[ast.AST, ...], frozenset[str]]:
    """(import statements, names read as `cfg.<name>`) of a source, once per text: every stage's key reads
    the same modules, and walking their syntax trees is most of a key's cost."""
    nodes = list(ast.walk(ast.parse(source)))
    imports = tuple(n for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)))
    return imports, frozenset(n.attr for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                              and n.value.id == "cfg")


def module_path(module: str) -> Path:
    """The file of a package module by its dotted name below the package: "train" -> train.py, "sae" ->
    sae/__init__.py, "sae.fit" -> sae/fit.py, "__init__" -> the package's own __init__.py."""
    path = PACKAGE_DIR.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def module_name(path: Path) -> str:
    """The dotted name `module_path` maps back to `path`."""
    parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _is_module(module: str) -> bool:
    return module_path(module).exists()


def module_imports(source: str, where: str, in_package: bool, package: tuple[str, ...] = ()) -> set[str]:
    """Modules of the package that `source` imports anywhere (top level or inside functions), as dotted names
    (`module_path`). `package`: the subpackage the source lives in (("sae",) for sae/fit.py), which
    relative imports start from."""
    try:
        nodes = _scan(source)[0]
    except SyntaxError as e:
        raise SyntaxError(f"{where}: cannot read its imports: {e}") from None
    found = {"__init__"}  # importing anything from the package runs its __init__
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == PACKAGE:
                    found.add(".".join(parts[1:]) if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom):
            absolute = node.level == 0 and (node.module or "").split(".")[0] == PACKAGE
            if absolute:
                base = (node.module or "").split(".")[1:]
            elif node.level >= 1 and in_package and node.level - 1 <= len(package):
                base = list(package[:len(package) - (node.level - 1)]) + [p for p in (node.module or "").split(".") if p]
            else:
                continue
            if base:  # `from .sae import fit`: a submodule when one of that name exists, else a name in sae/__init__
                subs = [".".join(base + [a.name]) for a in node.names]
                found.update(m if _is_module(m) else ".".join(base) for m in subs)
            else:  # `from recsae_utils import x` / `from . import x`: x is a module or a name in __init__
                found.update(a.name for a in node.names)
    return found


def module_closure(roots: set[str], read: Callable[[Path], str] = _read_source) -> set[str]:
    """The package modules reachable from `roots` through their imports (names that are not modules, such
    as a function imported from __init__, are dropped). A submodule brings its packages' __init__ along:
    importing sae.fit runs sae/__init__.py first."""
    todo, seen = [m for m in roots], set()
    while todo:
        m = todo.pop()
        path = module_path(m)
        if m in seen or not path.exists():
            continue
        seen.add(m)
        parts = m.split(".") if m != "__init__" else []
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # the enclosing packages
        package = tuple(parts) if path.name == "__init__.py" else tuple(parts[:-1])
        todo += module_imports(read(path), str(path), in_package=True, package=package) - seen
    return seen


def _data_files() -> list[Path]:
    """Files the package ships besides its Python source (templates, CSS, JavaScript)."""
    return sorted(p for p in PACKAGE_DIR.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts)


def code_hash(nb: Path, read: Callable[[Path], str] = _read_source) -> tuple[str, list[str]]:
    """(hash, modules) of the package code a notebook runs: the modules it imports, followed through the
    package, and the data files those modules name (a data file no module names counts for every stage)."""
    mods = sorted(module_closure(module_imports(notebook_code(nb), str(nb), in_package=False), read))
    sources = {m: read(module_path(m)) for m in mods}
    all_sources = {module_name(p): read(p) for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    h = hashlib.sha256()
    for m in mods:
        h.update(f"{m}\0{sources[m]}\0".encode())
    for f in _data_files():
        rel = f.relative_to(PACKAGE_DIR)
        named = [m for m, src in all_sources.items() if any(f"{p}" in src for p in rel.parts)]
        if not named or set(named) & set(mods):
            h.update(str(rel).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16], mods


def data_hash(cfg: config.RunConfig) -> str:
    """The data source actually read (zip checksum or the input files' contents): see sources.source_fingerprint."""
    from .sources import source_fingerprint

    return source_fingerprint(cfg.data_source, cfg.dataset)


def stage_fields(nb: Path, read: Callable[[Path], str] = _read_source, modules: list[str] | None = None) -> list[str]:
    """The config fields a stage reads, derived from its code rather than listed by hand (a list missed
    sae_family, ablations and dict_rows, so changing them reused stale stages): every `cfg.<field>` in the
    notebook and in the package modules it runs (`code_hash`), the RunConfig being named `cfg` throughout.
    config.py itself is left out (its validation reads every field), and so are the locations: where
    files live changes no result, and the data's own fingerprint is in every key. A module-level scan can
    only over-count (a field read by a function the stage never calls reruns it needlessly, never stale).
    `modules`: code_hash(nb, read)[1] when the caller has it."""
    names = {f.name for f in dataclasses.fields(config.RunConfig)} - set(config.LOCATIONS)
    modules = code_hash(nb, read)[1] if modules is None else modules
    sources = [notebook_code(nb)] + [read(module_path(m)) for m in modules if m != "config"]
    return sorted(names & set().union(*(_scan(src)[1] for src in sources)))


def stage_keys(cfg: config.RunConfig, nbs: list[Path], read: Callable[[Path], str] = _read_source) -> dict[str, str]:
    """{notebook name: key}; each key chains the one before it, so a change reruns everything after it."""
    cfg_dict = cfg.to_dict()
    upstream = artifacts.config_hash([data_hash(cfg), {"dataset": cfg.dataset, "profile": cfg.profile}])
    keys = {}
    for nb in nbs:
        code, modules = code_hash(nb, read)
        fields = {f: cfg_dict[f] for f in stage_fields(nb, read, modules)}
        upstream = keys[nb.name] = artifacts.config_hash([upstream, nb.read_bytes().decode("utf-8"), code, fields])
    return keys


# ---------------------------------------------------------------------------------------------------
# One run per run folder


@contextlib.contextmanager
def run_lock(run_dir: Path, what: str = "run folder") -> Iterator[None]:
    """Hold <folder>/.lock for the whole dataset run; a second run on the same folder is refused with the
    other process's pid and command (two writers would silently mix their results). The lock file is
    opened without following a symlink and must be a regular file: a planted link would make the pid line
    overwrite whatever it points to."""
    path = Path(run_dir) / ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:  # ELOOP: a symlink
        raise SystemExit(f"\n{path}: cannot open the lock file ({e.strerror}); it must be a regular file, not a "
                         f"symlink: remove it and rerun.\n") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SystemExit(f"\n{path}: the lock file is not a regular file: remove it and rerun.\n")
    f = os.fdopen(fd, "r+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process (pid not yet written)"
            raise SystemExit(f"\n{run_dir} is in use by {holder}.\nOne run per {what}: wait for it to finish, "
                             f"stop it, or give this run its own folder ({_OWN_FOLDER[what]}).\n") from None
        argv = list(sys.argv)
        if argv and argv[0] == __file__:
            argv[0] = "python -m recsae_utils.pipeline"
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({' '.join(argv) or sys.executable}), started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        yield
    finally:
        f.close()  # closing releases the lock


_OWN_FOLDER = {"run folder": "RECSAE_RUN_ROOT", "report folder": "RECSAE_REPORT_ROOT"}


@contextlib.contextmanager
def dataset_locks(cfg: config.RunConfig) -> Iterator[None]:
    """The run folder's lock and the report folder's (one lock when they are the same folder): two runs
    with their own run folders but one report folder would otherwise each write half of one report."""
    with run_lock(cfg.run_dir):
        if cfg.report_dir.resolve() == cfg.run_dir.resolve():
            yield
        else:
            with run_lock(cfg.report_dir, "report folder"):
                yield


# ---------------------------------------------------------------------------------------------------
# What a finished stage left in the run folder


def checkpoints(run_dir: Path) -> dict[str, str]:
    """{path under run_dir: sha256} of the trained models there (`*.safetensors`, not the `*_last` resume
    files). A finished stage records them: a checkpoint replaced or damaged since (a torchrun job, a copy, a
    disk error) makes that stage and every later one run again instead of reporting on other weights."""
    return {str(p.relative_to(run_dir)): artifacts.file_sha256(p) for p in sorted(Path(run_dir).rglob("*.safetensors"))
            if not p.stem.endswith("_last")}


def changed_checkpoints(state: dict, now: dict[str, str]) -> set[str]:
    """The recorded checkpoints whose file differs now from what the last stage that recorded it saw (a later
    stage may rewrite what an earlier one recorded, e.g. an SAE refitted with another lr: that is no change).
    Each stage that recorded one of them, the earliest first, then runs again."""
    latest: dict[str, str] = {}
    for name in sorted(state):
        if isinstance(state[name], dict):
            latest.update(state[name].get("checkpoints", {}))
    return {f for f, h in latest.items() if now.get(f) != h}


KEEP_ON_FORCE = (".lock", "labels/llm_cache")  # the lock we hold; the LLM answers and token ledger (never stale)


def clear_run_folder(run_dir: Path, also_keep: tuple[Path, ...] = ()) -> list[Path]:
    """--force: delete everything in the run folder but KEEP_ON_FORCE (and `also_keep`, e.g. a report folder
    inside it), so every model is trained again and no cache is trusted; returns what it removed."""
    run_dir = Path(run_dir).resolve()
    keep = {run_dir / k for k in KEEP_ON_FORCE} | {Path(k).resolve() for k in also_keep}
    removed = []
    for p in sorted(run_dir.rglob("*"), key=lambda q: (len(q.parts), str(q))):
        if p in keep or any(k.is_relative_to(p) or p.is_relative_to(k) for k in keep) or not os.path.lexists(p):
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        removed.append(p.relative_to(run_dir))
    return removed


# ---------------------------------------------------------------------------------------------------
# Running the stages


def _say(message: str) -> None:
    print(message, flush=True)  # under make, stdout is a pipe: without the flush lines would come in bursts


def run_dataset(dataset: str, profile: str | None = None, force: bool = False, log=_say,
                until: str | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> list[dict]:
    cfg = config.load(dataset, profile)
    with dataset_locks(cfg):
        rows = _run_stages(cfg, force, log, until, notebook_dir)
    return rows


def _run_stages(cfg: config.RunConfig, force: bool, log, until: str | None, notebook_dir: Path) -> list[dict]:
    dataset, run_dir = cfg.dataset, cfg.run_dir
    out_dir = cfg.report_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in (cfg.report_dir, run_dir):  # temp files of writes a kill interrupted (we hold both locks)
        artifacts.remove_stale_temp(folder)
    others = [run_dir / m for m in config.MODELS if cfg.model == "sasrec" and m != "sasrec"]  # their own runs
    if force and (removed := clear_run_folder(run_dir, also_keep=(cfg.report_dir, *others))):
        log(f"[{dataset}] --force: removed {', '.join(map(str, removed))} from {run_dir} (kept: the LLM cache)")
    state_path = run_dir / "stages.json"
    state = artifacts.read_json(state_path) if state_path.exists() else {}
    params = {"dataset": dataset, "profile": cfg.profile}
    nbs = [nb for nb in notebooks(notebook_dir) if not (until and nb.name[:2] > until)]
    keys = stage_keys(cfg, nbs)
    changed = changed_checkpoints(state, checkpoints(run_dir))
    rows = []
    stale = force
    for nb in nbs:
        out_nb = out_dir / nb.name
        t0 = time.time()
        done = state.get(nb.name)
        if not stale and isinstance(done, dict) and done.get("key") == keys[nb.name] and out_nb.exists() \
                and not changed & set(done.get("checkpoints", {})):
            status = "reused"
        else:
            stale = True  # this stage rewrites what every later stage read
            for later in [n for n in state if n >= nb.name]:
                del state[later]
            artifacts.write_json(state_path, state)  # no key while it runs: a kill leaves it undone
            log(f"[{dataset}] {nb.name} ...")
            before = _summary(cfg.report_dir)

            def finite_headlines(before=before) -> None:
                after = _summary(cfg.report_dir)
                if bad := nonfinite_headlines({k: v for k, v in after.items() if before.get(k) != v}):
                    raise StageFailed(f"it ran to the end, but headline numbers it wrote to summary.json are not "
                                      f"finite: {', '.join(bad)}")

            _execute(nb, out_nb, params, run_dir, lambda line, s=nb.name[:2]: log(f"[{dataset}] {s} · {line}"),
                     finite_headlines)
            problems = degraded(cfg.report_dir)
            if problems:  # finished, but left work undone (failed labels, a spent budget): a rerun redoes it
                status = "degraded"
                for p in problems:
                    log(f"[{dataset}] {nb.name}: DEGRADED: {p}")
            else:
                state[nb.name] = {"key": keys[nb.name], "checkpoints": checkpoints(run_dir)}
                artifacts.write_json(state_path, state)
                status = "ran"
        secs = time.time() - t0
        rows.append({"dataset": dataset, "model": cfg.model, "stage": nb.stem, "status": status, "seconds": secs})
        log(f"[{dataset}] {nb.name}: {status} in {secs:.1f}s")
    write_run_record(cfg, rows)
    from .reports import write_report

    write_report(cfg.report_dir)
    return rows


# summary.json entries that no finished stage may leave NaN or infinite (everything under each path): a
# diverged model's numbers must fail its stage, not become a report
HEADLINES = ("sasrec.dev", "sasrec.test", "recsae.dev", "recsae.test", "sae.main.health", "sae.main.fidelity.retention")


def _summary(report_dir: Path) -> dict:
    path = Path(report_dir) / "summary.json"
    return artifacts.read_json(path) if path.exists() else {}


def nonfinite_headlines(summary: dict) -> list[str]:
    """The HEADLINES numbers of `summary` (sections as in summary.json) that are NaN or infinite, as dotted paths."""
    def walk(value, path: str) -> list[str]:
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in walk(v, f"{path}.{k}")]
        return [f"{path} = {value}"] if isinstance(value, float) and not math.isfinite(value) else []

    out = []
    for head in HEADLINES:
        value = summary
        for part in head.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out += walk(value, head)
    return out


def degraded(report_dir: Path) -> list[str]:
    """The problems a finished stage recorded in summary.json (any section's `degraded` list)."""
    path = Path(report_dir) / "summary.json"
    if not path.exists():
        return []
    return [p for section in artifacts.read_json(path).values() if isinstance(section, dict)
            for p in section.get("degraded") or []]


def write_run_record(cfg: config.RunConfig, rows: list[dict]) -> None:
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
    env = {**config.given_environment(), **AS_GIVEN}
    write_redacted_json(cfg.report_dir / "run.json", {
        "command": f"{' '.join(f'{k}={v}' for k, v in sorted(env.items()))} make all DATASETS={cfg.dataset}".strip(),
        "argv": sys.argv, "config": cfg.to_dict(), "git_commit": rev,
        "data": artifacts.read_json(manifest).get("source_sha256") if manifest.exists() else None,
        "stages": rows, "python": platform.python_version(), "torch": torch.__version__,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
    })


def write_redacted_json(path: Path, record: dict) -> None:
    """JSON with no secret in it (redaction.redact): run.json holds the command line and the environment."""
    artifacts.write_text(path, redact(artifacts.to_json(record)))


AS_GIVEN: dict[str, str] = {}  # location variables as the user typed them (main() makes them absolute)


class _Tail(threading.Thread):
    """Print each line a stage appends to its progress file, as it comes."""

    def __init__(self, path: Path, emit: Callable[[str], None]):
        super().__init__(daemon=True)
        self.path, self.emit, self.pos = path, emit, 0
        self.stop = threading.Event()

    def poll(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return
        done = chunk[:chunk.rfind("\n") + 1]  # whole lines only
        self.pos += len(done.encode("utf-8"))
        for line in done.splitlines():
            self.emit(line)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.poll()

    def finish(self) -> None:
        self.stop.set()
        self.join()
        self.poll()


def _execute(nb: Path, out_nb: Path, params: dict, run_dir: Path, emit: Callable[[str], None],
             accept: Callable[[], None] = lambda: None) -> None:
    """Run `nb` into a temp copy in the run folder; when it ran to the end and `accept()` raises nothing,
    move it to `out_nb`, else to <run_dir>/failed/ (a half-executed notebook never replaces the last good
    one in reports/).

    The kernel's sockets and connection file live in a temp folder of this run alone, removed at the end:
    in the default place, `kernel-ipc-N` in the working directory (notebooks/, shared by every run of the
    checkout), two runs starting together took the same sockets."""
    import papermill as pm
    from traitlets.config import Config

    work = run_dir / "executing"
    work.mkdir(parents=True, exist_ok=True)
    tmp_nb = work / nb.name
    progress_file = work / f"{nb.stem}.progress"
    progress_file.write_text("", encoding="utf-8")
    tail = _Tail(progress_file, emit)
    config.set_progress_file(progress_file)
    remove_dead_kernel_dirs()
    kernel_dir = Path(tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-"))  # short: a socket path has at most ~100 bytes
    # IPC transport: the kernel is local, and ipykernel's warning about unencrypted TCP says nothing a user
    # could act on
    kernel = {"transport": "ipc", "ip": str(kernel_dir / "kernel-ipc"), "connection_file": str(kernel_dir / "kernel.json")}
    tail.start()
    try:
        pm.execute_notebook(str(nb), str(tmp_nb), parameters=params, cwd=str(nb.parent), progress_bar=False,
                            kernel_name="python3", config=Config({"KernelManager": kernel}))
        accept()
    except (Exception, StageFailed) as e:  # a cell's error, the kernel died, or the results are not acceptable
        kept = keep_failed(tmp_nb, run_dir / "failed" / nb.name)
        where = (f"cell {e.exec_count}: {e.ename}: {e.evalue}" if isinstance(e, pm.PapermillExecutionError)
                 else str(e).strip() if isinstance(e, StageFailed) else f"{type(e).__name__}: {e}")
        raise StageFailed(f"\nNotebook failed: {nb.name} ({kept}; reports/ keeps the last good one; the next run "
                          f"redoes this stage)\n  {where}\n") from None
    finally:
        tail.finish()
        config.set_progress_file(None)
        progress_file.unlink(missing_ok=True)
        shutil.rmtree(kernel_dir, ignore_errors=True)
    with artifacts.atomic_path(out_nb) as tmp:
        shutil.copyfile(tmp_nb, tmp)
    tmp_nb.unlink()


KERNEL_DIR_PREFIX = "recsae-kernel-"


def remove_dead_kernel_dirs() -> list[Path]:
    """Delete the kernel folders (`_execute`) that killed runs left in the temp folder: each is named by its
    run's pid, and one whose process is gone belongs to no live run."""
    removed = []
    for d in Path(tempfile.gettempdir()).glob(f"{KERNEL_DIR_PREFIX}*-*"):
        pid = d.name[len(KERNEL_DIR_PREFIX):].split("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except PermissionError:  # alive, another user's
            pass
    return removed


def keep_failed(tmp_nb: Path, failed: Path) -> str:
    """Copy a failed stage's executed notebook to `failed` atomically, only if it is whole (papermill writes
    it in place, so a full disk can cut it short); says where it went, or why there is none."""
    if not tmp_nb.exists():
        return "no executed copy: the kernel wrote none"
    try:
        json.loads(tmp_nb.read_text(encoding="utf-8"))
        with artifacts.atomic_path(failed) as tmp:
            shutil.copyfile(tmp_nb, tmp)
    except (OSError, ValueError) as e:
        return f"no executed copy: {tmp_nb} is cut short or cannot be copied ({type(e).__name__}; disk full?)"
    finally:
        tmp_nb.unlink(missing_ok=True)
    return f"executed copy: {failed}"


@contextlib.contextmanager
def model_environment(model: str | None) -> Iterator[None]:
    """Run as RECSAE_MODEL=<model> would (None: leave the environment alone): the notebooks' kernels read
    the model from the environment, and run.json then records the command that reproduces this model's
    report. RECSAE_MODELS is hidden meanwhile and everything is restored afterwards."""
    if model is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("RECSAE_MODEL", "RECSAE_MODELS")}
    os.environ.pop("RECSAE_MODELS", None)
    os.environ["RECSAE_MODEL"] = model
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_model_comparison(report_dir: Path, log=_say) -> None:
    """The dataset's models.md / models.json from every model's summary (`model_comparison`), then SASRec's
    README again, which links the table."""
    from .model_comparison import write_comparison
    from .reports import write_report

    md_path, _ = write_comparison(report_dir)
    log(f"[{Path(report_dir).name}] models compared: {md_path}")
    if (Path(report_dir) / "summary.json").exists():
        write_report(report_dir)


def run_name(row: dict, several: bool) -> str:
    """A stage row's run in the final table: the dataset, with the model when several ran or it is not SASRec."""
    model = row.get("model", "sasrec")
    return row["dataset"] if model == "sasrec" and not several else f"{row['dataset']} {model}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="*", default=["ml-1m"])
    ap.add_argument("--profile", default=None, help="full (default) or tiny; env RECSAE_PROFILE")
    ap.add_argument("--force", action="store_true", help="run every stage even if unchanged")
    ap.add_argument("--until", default=None, help="stop after this stage number, e.g. 02")
    ap.add_argument("--limit", type=int, default=None, metavar="N",
                    help="with the LLM labeler: label only N latents by LLM, the rest offline; env RECSAE_LLM_LIMIT")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help=argparse.SUPPRESS)  # tests
    args = ap.parse_args(argv)
    if args.limit is not None:  # the notebooks read every setting from the environment
        os.environ["RECSAE_LLM_LIMIT"] = str(args.limit)
    from .sources import DataError, resolve_source

    try:
        models = config.models_to_run()
        for ds in args.datasets:  # every setting, and where each dataset's input is, checked before stage 01
            for m in models or [None]:
                cfg = config.load(ds, args.profile, model=m)
                resolve_source(cfg.data_source, cfg.dataset)
    except config.ConfigError as e:
        print(f"recsae: invalid setting: {e}", file=sys.stderr)
        return 2
    except DataError as e:  # e.g. a data folder that exists but holds no dataset
        print(f"recsae: bad input: {e}", file=sys.stderr)
        return 2
    AS_GIVEN.update(config.export_locations())  # notebooks run in notebooks/: hand them absolute paths
    rows = []
    t0 = time.time()
    for ds in args.datasets:
        try:
            for m in models or [None]:
                with model_environment(m):
                    rows += run_dataset(ds, args.profile, args.force, until=args.until, notebook_dir=args.notebooks)
        except DataError as e:  # the input changed under the run (the stage keys fingerprint it)
            print(f"recsae: bad input: {e}", file=sys.stderr)
            return 2
        if models:
            write_model_comparison(config.load(ds, args.profile, model="sasrec").report_dir)
    several = bool(models)
    print("\n| dataset | stage | status | seconds |\n|---|---|---|---:|")
    for r in rows:
        print(f"| {run_name(r, several)} | {r['stage']} | {r['status']} | {r['seconds']:.1f} |")
    print(f"| all | | | {time.time() - t0:.1f} |")
    bad = [r for r in rows if r["status"] == "degraded"]
    if bad:
        print(f"\nrecsae: {len(bad)} stage(s) finished degraded ({', '.join(run_name(r, several) + ' ' + r['stage'] for r in bad)});"
              " see DEGRADED above and the report's Key findings. A rerun redoes them.", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
