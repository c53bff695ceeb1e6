"""The set-up every notebook from stage 03 on starts with, as one call: `open(dataset, profile, ...)` loads the
run's config and plot style, the stage inputs (data, frozen SASRec, cached h_u), the SAE fits a stage reads
and, for the concept stages, the default SAE's codes on the dictionary sample."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .. import config, reports
from ..config import RunConfig
from ..sae import FitResult, TopKSAE
from .fit import activation_arrays, fit_plan, fit_stage
from .inputs import StageInputs, dictionary_sample, stage_inputs


@dataclass
class Run:
    """What a notebook's cells read: the config, the stage inputs, the fits by name (fit_plan's names) and,
    when asked for, the default SAE's codes {split: (indices, values)} on the dictionary sample."""

    cfg: RunConfig
    ctx: StageInputs
    fits: dict[str, FitResult]
    acts: dict | None = None

    @property
    def saes(self) -> dict[str, TopKSAE]:
        return {n: f.sae for n, f in self.fits.items()}

    @property
    def sae(self) -> TopKSAE:
        """The default SAE ("main")."""
        return self.fits["main"].sae


def open(dataset: str, profile: str = "", fits: Iterable[str] | None = None, sample: bool = False) -> Run:
    """The run of `dataset` (profile "" = $RECSAE_PROFILE or full) with the report style set. `fits`: the SAE
    fits to load (fitted now if missing), by name; None = every fit of the plan, () = none (stage 03 fits
    them in its own cell). `sample`: also the default SAE's codes, with the stage inputs and codes cut to the
    concept dictionaries' training sample (`dictionary_sample`), as stages 05-07 read them."""
    cfg = config.load(dataset, profile)
    plan = fit_plan(cfg)
    names = list(plan) if fits is None else list(fits)
    unknown = [n for n in names if n not in plan]
    if unknown:
        raise ValueError(f"unknown SAE fit(s) {unknown}: this run fits {list(plan)}")
    if sample and "main" not in names:
        raise ValueError("sample=True reads the default SAE's codes: include 'main' in fits")
    reports.set_style()
    ctx = stage_inputs(cfg)
    loaded = {n: fit_stage(cfg, ctx, *plan[n]) for n in names}
    acts = None
    if sample:
        ctx, acts = dictionary_sample(cfg, ctx, activation_arrays(cfg, ctx, loaded["main"].sae))
    return Run(cfg, ctx, loaded, acts)

