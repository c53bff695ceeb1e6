"""One place for every run parameter. Notebooks get `dataset` and `profile` from papermill and build
their config here, so a change of a default reaches every stage.

Profiles: `full` = the published settings; `tiny` = the same code on the tiny synthetic data the tests
write (few epochs, a small SAE). Any field can be overridden by papermill (`-p name value`) or with
environment variables RECSAE_<FIELD> (e.g. RECSAE_SAE_K=8).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import artifacts


@dataclass
class RunConfig:
    dataset: str = "ml-1m"            # 'ml-1m' (raw GroupLens files) or a ReChorus folder name ('grocery')
    profile: str = "full"
    data_dir: str = ""                # holds ml-1m/ and ReChorus folders; "" = $RECSAE_DATA_DIR or download
    run_root: str = ""                # artifacts go to <run_root>/<dataset>/; "" = $RECSAE_RUN_DIR or ./runs
    report_root: str = ""             # figures/tables go to <report_root>/<dataset>/; "" = ./reports
    # SASRec (reference = ReChorus settings, protocol.md §2)
    seeds: list[int] = field(default_factory=lambda: [0])  # RECSAE_SEEDS=0,1,2 for mean and spread
    history_max: int = 20
    d_model: int = 64
    lr: float = 1e-4
    l2: float = 1e-6
    batch_size: int = 256
    max_epochs: int = 200
    early_stop: int = 10
    # SAE (protocol.md §3); a second size is fitted and reported beside the default
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
    sae_dead_window: int = 100_000    # samples without firing before a latent counts as dead (AuxK, openai)
    sae_aux_coef: float = 1 / 32      # AuxK coefficient (Gao et al.; the reference uses the same)
    sae_aux_relu: bool = False        # True = ReLU on AuxK values (Gao et al.); False revives dead latents (sae.py)
    sae_lr_decay: float = 0.5         # last half of the steps: lr falls linearly to 0 (settles the final weights)
    sae_l2: float = 0.0               # Adam weight decay; the reference's 1e-6 shrinks unused latents towards 0
    # concepts and labels (protocol.md §4)
    top_n: int = 50                   # top-activating sequences per latent shown on the cards
    item_pool: int = 0                # firings per latent behind item tables, enrichment, labels (0 = all)
    labeler: str = "offline"          # 'offline' (metadata, no network) or 'openai' (any compatible server)
    llm_model: str = "gpt-4o-mini"
    llm_budget_tokens: int = 2_000_000
    seed: int = 0                     # seed of every stage after SASRec training

    @property
    def run_dir(self) -> Path:
        return artifacts.run_dir(self.dataset, self.run_root or None)

    @property
    def report_dir(self) -> Path:
        root = Path(self.report_root or os.environ.get("RECSAE_REPORT_DIR") or artifacts.repo_root() / "reports")
        path = root / self.dataset
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data_source(self) -> Path | None:
        d = self.data_dir or os.environ.get("RECSAE_DATA_DIR")
        return Path(d) if d else None

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "full": {},
    "tiny": {"seeds": [0], "max_epochs": 4, "early_stop": 2, "batch_size": 64, "sae_latents": 64, "sae_k": 4,
             "sae_alt_latents": 32, "sae_alt_k": 2, "sae_epochs": 3, "sae_dead_window": 2000, "sae_lr": 1e-3, "sae_batch_size": 64,
             "top_n": 10},
}


def _coerce(value: str, like):
    if isinstance(like, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    if isinstance(like, list):
        return [int(v) for v in value.split(",") if v.strip()]
    return value


def load(dataset: str = "ml-1m", profile: str | None = None, **overrides) -> RunConfig:
    """Defaults, then the profile, then RECSAE_<FIELD> environment variables, then explicit overrides."""
    profile = profile or os.environ.get("RECSAE_PROFILE") or "full"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    cfg = replace(RunConfig(dataset=dataset, profile=profile), **PROFILES[profile])
    env = {}
    for f in fields(RunConfig):
        v = os.environ.get(f"RECSAE_{f.name.upper()}")
        if v is not None and f.name not in ("dataset", "profile", "data_dir", "run_root"):
            env[f.name] = _coerce(v, getattr(cfg, f.name))
    cfg = replace(cfg, **env)
    unknown = set(overrides) - {f.name for f in fields(RunConfig)}
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
