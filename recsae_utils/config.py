"""One place for every run parameter, and the only module that reads the environment. Notebooks get
`dataset` and `profile` from papermill and build their config here, so a change of a default reaches every
stage.

Profiles: `full` = the published settings; `tiny` = the same code on the tiny synthetic data the tests
write (few epochs, a small SAE); `scale` = the published sizes with one SASRec and one SAE epoch, for
benchmarks/bench_scale.py on synthetic data of growing size. Any field can be overridden by papermill (`-p name value`) or with an
environment variable RECSAE_<FIELD> (e.g. RECSAE_SAE_K=8). `load` validates every value at start-up and
names the variable, the value and what is allowed, so a typo fails before stage 01 instead of deep in a
later stage (or not at all).

Where files live (`data_dir`, `run_root`, `report_root`) is not a result-changing setting: "" in the
config (and in summary.json) means "from the environment or the default", resolved by the `data_source`,
`run_dir`, `report_dir` and `cache_dir` properties. Older variable names stay as aliases: RECSAE_DATA_DIR
is data_dir's own name, RECSAE_RUN_DIR = RECSAE_RUN_ROOT, RECSAE_REPORT_DIR = RECSAE_REPORT_ROOT.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import artifacts
from .redaction import redact

ENV_PREFIX = "RECSAE_"
# old names of fields' variables, still accepted
ALIASES = {"RECSAE_RUN_DIR": "run_root", "RECSAE_REPORT_DIR": "report_root"}
# RECSAE_ variables that are not fields
OTHER_VARS = {
    "RECSAE_CACHE_DIR": "where the MovieLens download is cached (default ~/.cache/recsae)",
    "RECSAE_PROGRESS": "set by the pipeline for the notebooks it runs: the file their progress lines go to",
    "RECSAE_NO_APT": "tests: never apt-get a browser for the concept-browser test",
    "RECSAE_MODELS": "several base models, run in turn by the pipeline, e.g. sasrec,gru4rec (docs/models.md)",
}
# dataset name -> folder under data_dir ('ml-1m': the raw GroupLens files; the others: ReChorus format)
DATASETS = {"ml-1m": "ml-1m", "ML_1MTOPK": "MovieLens_1M/ML_1MTOPK", "grocery": "Grocery_and_Gourmet_Food"}
SAE_VARIANTS = ("openai", "reference")
SAE_FAMILIES = ("topk", "batchtopk", "matryoshka")
SAE_LOSSES = ("mse", "score", "kl")   # what the SAE reconstructs (sae/variants.py)
SAE_INPUTS = ("raw", "whitened")
LABELERS = ("offline", "openai")
# the base models a run can interpret (models.MODELS; docs/models.md) and the settings each takes from
# ReChorus's run scripts (docs/demo_scripts_results/Topk_Amazon.sh) where they differ from SASRec's
MODELS = ("sasrec", "gru4rec", "bprmf", "lightgcn")
# their display names, the one place they are written (each model class takes its `label` from here; report
# code reads them here rather than import the models package, whose config reads would make every stage
# depend on d_model)
MODEL_LABELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "bprmf": "BPRMF", "lightgcn": "LightGCN"}
MODEL_DEFAULTS = {"sasrec": {}, "gru4rec": {"lr": 1e-3, "l2": 1e-4}, "bprmf": {"lr": 1e-3, "l2": 1e-6},
                  "lightgcn": {"lr": 1e-3, "l2": 1e-8}}
LOCATIONS = ("data_dir", "run_root", "report_root")
SEED_MAX = 2 ** 32 - 1   # numpy's legacy seeding (np.random.seed, SASRec's seed_everything) takes no more
INT_MAX = 2 ** 63 - 1


class ConfigError(ValueError):
    """A setting that cannot work: the message names the variable (or parameter), the value and what is
    allowed."""


@dataclass
class RunConfig:
    dataset: str = "ml-1m"            # 'ml-1m' (raw GroupLens files) or a ReChorus folder name ('grocery')
    profile: str = "full"
    data_dir: str = ""                # holds ml-1m/ and ReChorus folders; "" = $RECSAE_DATA_DIR or download
    run_root: str = ""                # artifacts go to <run_root>/<dataset>/; "" = $RECSAE_RUN_ROOT or ./runs
    report_root: str = ""             # figures/tables go to <report_root>/<dataset>/; "" = $RECSAE_REPORT_ROOT or ./reports
    # the base model (reference = ReChorus settings, docs/protocol.md); lr and l2 below are SASRec's, another
    # model starts from its own (MODEL_DEFAULTS) unless they are set
    model: str = "sasrec"             # RECSAE_MODEL: sasrec, gru4rec, bprmf or lightgcn (docs/models.md)
    seeds: list[int] = field(default_factory=lambda: [0])  # RECSAE_SEEDS=0,1,2 for mean and spread
    history_max: int = 20
    d_model: int = 64
    lr: float = 1e-4
    l2: float = 1e-6
    batch_size: int = 256
    max_epochs: int = 200
    early_stop: int = 10
    # SAE (docs/protocol.md, "The SAE"); a second size is fitted and reported beside the default
    sae_latents: int = 2048
    sae_k: int = 32
    sae_alt_latents: int = 1024
    sae_alt_k: int = 8
    sae_samples: int = 6_500_000      # training vectors the SAE sees, whatever the dataset: 12 epochs on ML-1M
                                      # (562,729 vectors), 61 on Grocery (107,211); reference: 50 epochs at lr 1e-4
    sae_epochs: int = 0               # > 0 overrides sae_samples with a fixed number of epochs
    sae_lr: float = 3e-3              # measured (benchmarks/bench_sae.py): EV > 0.98 after one epoch
    sae_batch_size: int = 1024
    sae_variant: str = "openai"       # 'openai' (Gao et al.) or 'reference' (RecSAE code quirks)
    sae_family: str = "topk"          # 'topk', 'batchtopk' or 'matryoshka' (sae/model.py; 'reference' variant fits are always topk)
    sae_dead_window: int = 100_000    # samples without firing before a latent counts as dead (AuxK, openai)
    sae_aux_coef: float = 1 / 32      # AuxK coefficient (Gao et al.; the reference uses the same)
    sae_aux_relu: bool = False        # True = ReLU on AuxK values (Gao et al.); False revives dead latents (sae/losses.py)
    sae_lr_decay: float = 0.5         # last half of the steps: lr falls linearly to 0 (settles the final weights)
    sae_l2: float = 0.0               # Adam weight decay; the reference's 1e-6 shrinks unused latents towards 0
    sae_loss: str = "mse"             # 'mse' (h_u), 'score' (error in score space, M = E^T E) or 'kl' (SASRec's
                                      # next-item distribution from h_u and from the reconstruction): sae/variants.py;
                                      # these four settings apply to 'openai' fits ('reference' ones stay plain)
    sae_euclid: float = 0.0           # weight of a Euclidean term beside the 'score' or 'kl' loss
    sae_input: str = "raw"            # 'raw' or 'whitened' (PCA-whitened h_u; decoder rows mapped back to h_u)
    sae_dense: int = 0                # top principal directions of h_u kept outside the SAE as a fixed background
    # concepts and labels (docs/metrics.md, "Concepts")
    top_n: int = 50                   # top-activating sequences per latent shown on the cards
    item_pool: int = 0                # firings per latent behind item tables, enrichment, labels (0 = all)
    dict_rows: int = 1_000_000        # training instances behind the concept dictionaries (stages 05-06): a seeded
                                      # uniform sample when there are more (0 = all); ML-1M and Grocery have fewer,
                                      # so they use all; bounds memory at 16x ML-1M (benchmarks/bench_scale.py)
    concept_min_items: int = 30       # stage 07's yardstick: a metadata value with this many items is a concept
    labeler: str = "offline"          # 'offline' (metadata, no network) or 'openai' (any compatible server)
    llm_model: str = "gpt-4o-mini"
    llm_budget_tokens: int = 2_000_000
    llm_limit: int = 0                # > 0: the LLM labels only this many latents (the most frequent specific ones),
                                      # the rest keep offline labels (RECSAE_LLM_LIMIT, pipeline --limit N)
    llm_time_limit: int = 3600        # seconds each LLM step of stage 05 (labels, then judge) may take: requests
                                      # not sent by then fail and the run is degraded (a hanging server is bounded)
    seed: int = 0                     # seed of every stage after SASRec training
    device: str = "auto"              # torch work (SASRec training, SAE fits): "auto" = CUDA when present, else CPU
    ablations: bool = False           # opt-in comparisons the headline does not need: the reference-code SAE
                                      # variant (stage 03-04) and the history-window sweep (stage 05)

    @property
    def run_dir(self) -> Path:
        root = self.run_root or _location("run_root") or artifacts.repo_root() / "runs"
        return artifacts.run_dir(model_folder(self.dataset, self.model), root)

    @property
    def report_dir(self) -> Path:
        root = Path(self.report_root or _location("report_root") or artifacts.repo_root() / "reports")
        path = root / model_folder(self.dataset, self.model)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data_source(self) -> Path | None:
        """The folder holding the datasets, or None (MovieLens-1M is then downloaded)."""
        d = self.data_dir or _location("data_dir")
        return Path(d).expanduser() if d else None

    @property
    def cache_dir(self) -> Path:
        """Where downloads and their extraction are cached ($RECSAE_CACHE_DIR, default ~/.cache/recsae)."""
        return cache_dir()

    def to_dict(self) -> dict:
        return asdict(self)


def model_folder(dataset: str, model: str) -> str:
    """A run's folder below the run and report roots: SASRec's is the dataset's own, another model's
    artifacts go to <dataset>/<model>, apart from SASRec's."""
    return dataset if model == "sasrec" else f"{dataset}/{model}"


PROFILES = {
    "full": {},
    "tiny": {"seeds": [0], "max_epochs": 4, "early_stop": 2, "batch_size": 64, "sae_latents": 64, "sae_k": 4,
             "sae_alt_latents": 32, "sae_alt_k": 2, "sae_epochs": 3, "sae_dead_window": 2000, "sae_lr": 1e-3, "sae_batch_size": 64,
             "top_n": 10, "concept_min_items": 5},
    # benchmarks/bench_scale.py: the published model sizes with bounded work (1 SASRec epoch, 1 SAE epoch)
    "scale": {"seeds": [0], "max_epochs": 1, "early_stop": 1, "sae_epochs": 1},
}


# ---------------------------------------------------------------------------------------------------
# The environment (read here and nowhere else)


def _var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _location_var(name: str) -> tuple[str, str] | None:
    """(variable, value) of a location field in the environment (its own name first, then its old alias)."""
    for var in (_var(name), *(a for a, f in ALIASES.items() if f == name)):
        if os.environ.get(var):
            return var, os.environ[var]
    return None


def _location(name: str) -> str:
    found = _location_var(name)
    return found[1] if found else ""


def cache_dir() -> Path:
    return Path(os.environ.get("RECSAE_CACHE_DIR") or Path.home() / ".cache" / "recsae").expanduser()


def progress_file() -> Path | None:
    """The file a pipeline-run notebook appends its progress lines to (RECSAE_PROGRESS), or None."""
    p = os.environ.get("RECSAE_PROGRESS")
    return Path(p) if p else None


def given_environment() -> dict[str, str]:
    """The RECSAE_* variables (and OPENAI_BASE_URL) as set: the command recorded in run.json. Never the key,
    nor credentials inside a URL (redaction.redact)."""
    return {k: redact(v) for k, v in os.environ.items()
            if (k.startswith(ENV_PREFIX) and k != "RECSAE_PROGRESS") or k == "OPENAI_BASE_URL"}


def export_locations() -> dict[str, str]:
    """Make every location variable absolute in this process's environment, under the field's own name,
    so that notebook kernels (which run in notebooks/) see the folders the user meant. Returns the values
    as given, for the record."""
    given = {}
    for name in (*LOCATIONS, "cache_dir"):
        value = _location(name) if name != "cache_dir" else os.environ.get("RECSAE_CACHE_DIR", "")
        if value:
            given[_var(name)] = value
            os.environ[_var(name)] = str(Path(value).expanduser().resolve())
    for alias in ALIASES:
        os.environ.pop(alias, None)
    return given


def models_to_run() -> list[str] | None:
    """RECSAE_MODELS as a list of model names (None when unset): the pipeline runs each in turn, as if
    RECSAE_MODEL named it. Setting RECSAE_MODEL as well is an error (which one would the run mean?)."""
    value = os.environ.get("RECSAE_MODELS")
    if value is None:
        return None
    choices = f"choose from {', '.join(MODELS)} (docs/models.md)"
    if "RECSAE_MODEL" in os.environ:
        raise ConfigError(f"RECSAE_MODEL={os.environ['RECSAE_MODEL']!r} and RECSAE_MODELS={value!r}: set one; "
                          "RECSAE_MODEL runs one model, RECSAE_MODELS several in turn")
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise ConfigError(f"RECSAE_MODELS={value!r}: names no model; {choices}, comma-separated")
    for n in names:
        if n not in MODELS:
            raise ConfigError(f"RECSAE_MODELS={value!r}: unknown model {n!r}; {choices}")
    if len(set(names)) != len(names):
        raise ConfigError(f"RECSAE_MODELS={value!r}: names a model twice; list each once")
    return names


def set_progress_file(path: Path | None) -> None:
    """Point the notebooks started from now on at `path` for their progress lines (None: nowhere)."""
    if path is None:
        os.environ.pop("RECSAE_PROGRESS", None)
    else:
        os.environ["RECSAE_PROGRESS"] = str(path)


# ---------------------------------------------------------------------------------------------------
# Parsing and validation


def _parse(var: str, value: str, like):
    """A variable's text as the type of the field's default; a clear error otherwise."""
    text = value.strip()
    if isinstance(like, bool):
        low = text.lower()
        if low in ("1", "true", "yes"):
            return True
        if low in ("0", "false", "no"):
            return False
        raise ConfigError(f"{var}={value!r}: not a boolean; use 1/0, true/false or yes/no")
    try:
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
        if isinstance(like, list):
            return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        kind = {int: "an integer", float: "a number", list: "comma-separated integers"}[type(like)]
        raise ConfigError(f"{var}={value!r}: not {kind}") from None
    return value


def _check_unknown(env: dict[str, str]) -> None:
    allowed = {_var(f.name) for f in fields(RunConfig)} | set(ALIASES) | set(OTHER_VARS)
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and var not in allowed:
            near = difflib.get_close_matches(var, sorted(allowed), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(f"{var}={env[var]!r}: unknown setting{hint} (settings: RECSAE_<FIELD> for the fields "
                              f"of recsae_utils/config.py RunConfig, and {', '.join(sorted((*ALIASES, *OTHER_VARS)))})")
    if "RECSAE_DATASET" in env:
        raise ConfigError(f"RECSAE_DATASET={env['RECSAE_DATASET']!r}: the dataset is given on the command line "
                          "(make all DATASETS=..., or the notebook's `dataset` parameter), not in the environment")
    for alias, name in ALIASES.items():
        own = _var(name)
        if env.get(alias) and env.get(own) and env[alias] != env[own]:
            raise ConfigError(f"{alias}={env[alias]!r} and {own}={env[own]!r} disagree; {alias} is the old name "
                              f"of {own}: set one")


def validate(cfg: RunConfig, source: dict[str, str] | None = None) -> RunConfig:
    """Reject a config that cannot work. `source` maps a field to where its value came from (the variable
    name), for the message."""
    source = source or {}

    def bad(name: str, allowed: str):
        raise ConfigError(f"{source.get(name, name)}={getattr(cfg, name)!r}: {allowed}")

    if cfg.profile not in PROFILES:
        bad("profile", f"unknown profile; choose one of {sorted(PROFILES)}")
    for name in ("history_max", "d_model", "batch_size", "max_epochs", "early_stop", "sae_latents",
                 "sae_alt_latents", "sae_samples", "sae_batch_size", "sae_dead_window", "top_n", "llm_budget_tokens",
                 "concept_min_items", "llm_time_limit"):
        if getattr(cfg, name) < 1:
            bad(name, "must be a positive integer")
    for name in ("lr", "sae_lr"):
        if not getattr(cfg, name) > 0:
            bad(name, "must be > 0")
    for name in ("l2", "sae_l2", "sae_aux_coef", "sae_epochs", "item_pool", "seed", "llm_limit"):
        if not getattr(cfg, name) >= 0:
            bad(name, "must be >= 0")
    if not 0 <= cfg.sae_lr_decay <= 1:
        bad("sae_lr_decay", "must lie in [0, 1] (the fraction of the steps over which lr falls to 0)")
    if not 1 <= cfg.sae_k <= cfg.sae_latents:
        bad("sae_k", f"must lie in 1..sae_latents ({cfg.sae_latents})")
    if not 1 <= cfg.sae_alt_k <= cfg.sae_alt_latents:
        bad("sae_alt_k", f"must lie in 1..sae_alt_latents ({cfg.sae_alt_latents})")
    if not cfg.seeds or any(s < 0 for s in cfg.seeds):
        bad("seeds", "must be one or more non-negative integers, e.g. 0,1,2")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        bad("seeds", "names a seed twice; each seed trains one model, so list each once, e.g. 0,1,2")
    for name, values in (("seeds", cfg.seeds), ("seed", [cfg.seed])):
        if any(v > SEED_MAX for v in values):
            bad(name, f"seeds must lie in 0..{SEED_MAX} (numpy's seed range)")
    for f in fields(RunConfig):
        v = getattr(cfg, f.name)
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT_MAX:
            bad(f.name, f"too large: at most {INT_MAX} (a 64-bit integer)")
    if cfg.sae_variant not in SAE_VARIANTS:
        bad("sae_variant", f"choose one of {', '.join(SAE_VARIANTS)}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device):
        bad("device", "choose auto, cpu, cuda or cuda:N")
    if cfg.sae_family not in SAE_FAMILIES:
        bad("sae_family", f"choose one of {', '.join(SAE_FAMILIES)}")
    if cfg.sae_loss not in SAE_LOSSES:
        bad("sae_loss", f"choose one of {', '.join(SAE_LOSSES)}")
    if cfg.sae_input not in SAE_INPUTS:
        bad("sae_input", f"choose one of {', '.join(SAE_INPUTS)}")
    if not 0 <= cfg.sae_dense < cfg.d_model:
        bad("sae_dense", f"must lie in 0..d_model - 1 ({cfg.d_model - 1}): the principal directions of h_u kept "
                         "outside the SAE")
    if not 0 <= cfg.sae_euclid < float("inf"):
        bad("sae_euclid", "must be a finite number >= 0")
    if cfg.sae_loss == "score" and cfg.sae_input == "whitened":
        bad("sae_input", "cannot be 'whitened' with RECSAE_SAE_LOSS=score (the score loss fixes the coordinates)")
    if cfg.sae_loss == "kl" and (cfg.sae_input != "raw" or cfg.sae_dense):
        bad("sae_loss", "'kl' needs RECSAE_SAE_INPUT=raw and RECSAE_SAE_DENSE=0")
    if cfg.model not in MODELS:
        bad("model", f"unknown model; choose one of {', '.join(MODELS)} (docs/models.md)")
    if cfg.labeler not in LABELERS:
        bad("labeler", f"choose one of {', '.join(LABELERS)}")
    if not cfg.llm_model.strip():
        bad("llm_model", "must name a model")
    src = cfg.data_source
    if src is not None and not src.is_dir():
        raise ConfigError(f"{source.get('data_dir', 'data_dir')}={str(src)!r}: no such folder (it should hold "
                          f"ml-1m/ or ml-1m.zip, or a ReChorus dataset folder)")
    if cfg.dataset not in DATASETS and not (src is not None and (src / cfg.dataset).is_dir()):
        where = f" nor a folder in {src}" if src is not None else ""
        bad("dataset", f"unknown dataset: not one of {', '.join(DATASETS)}{where}")
    return cfg


def load(dataset: str = "ml-1m", profile: str | None = None, **overrides) -> RunConfig:
    """Defaults, then the profile, then RECSAE_<FIELD> environment variables, then explicit overrides;
    then validated (ConfigError naming the variable, the value and what is allowed)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    _check_unknown(env)
    for var in sorted({_var(n) for n in LOCATIONS} | set(ALIASES) | {"RECSAE_CACHE_DIR"}):
        if var in env and not env[var].strip():  # empty used to mean unset: RECSAE_DATA_DIR= then downloaded
            what = ("unset it to download MovieLens-1M, or name the folder holding the data" if var == "RECSAE_DATA_DIR"
                    else "unset it for the default, or name a folder")
            raise ConfigError(f"{var}={env[var]!r}: set but empty; {what}")
    source = {}
    if not profile:
        profile = env.get("RECSAE_PROFILE") or "full"
        source["profile"] = "RECSAE_PROFILE" if env.get("RECSAE_PROFILE") else "profile"
    if profile not in PROFILES:
        raise ConfigError(f"{source.get('profile', 'profile')}={profile!r}: unknown profile; choose one of "
                          f"{sorted(PROFILES)}")
    model = overrides.get("model") or env.get(_var("model")) or RunConfig.model
    if model not in MODELS:
        where = "model" if overrides.get("model") else _var("model")
        raise ConfigError(f"{where}={model!r}: unknown model; choose one of {', '.join(MODELS)} (docs/models.md)")
    cfg = replace(RunConfig(dataset=dataset, profile=profile), **{**MODEL_DEFAULTS[model], **PROFILES[profile]})
    values = {}
    for f in fields(RunConfig):
        var = _var(f.name)
        if f.name in ("dataset", "profile", *LOCATIONS) or var not in env:
            continue  # locations are read by the properties, so "" stays "" in the record
        values[f.name] = _parse(var, env[var], getattr(cfg, f.name))
        source[f.name] = var
    for name in LOCATIONS:
        if found := _location_var(name):
            source[name] = found[0]
    cfg = replace(cfg, **values)
    unknown = set(overrides) - {f.name for f in fields(RunConfig)}
    if unknown:
        near = {u: difflib.get_close_matches(u, [f.name for f in fields(RunConfig)], n=1) for u in sorted(unknown)}
        raise ConfigError("unknown parameter(s) " + ", ".join(f"{u!r}" + (f" (did you mean {n[0]!r}?)" if n else "")
                                                              for u, n in near.items()))
    given = {}
    for k, v in overrides.items():
        if v is not None:  # papermill may pass text: parse it like a variable
            like = getattr(cfg, k)
            given[k] = _parse(k, v, like) if isinstance(v, str) and not isinstance(like, str) else v
            source[k] = k
    return validate(replace(cfg, **given), source)
