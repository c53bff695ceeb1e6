"""The notebook stages' code past SASRec, named by stage: `inputs` (what stages 03-07 read: data, SASRec,
its h_u and own ranking, the dictionary sample), `fit` (stage 03: the SAE fits and their codes),
`evaluate` (stage 04: the metrics with the SAE plugged in) and `notebook` (`open`: a notebook's set-up
in one call). The public names are re-exported here."""
from .evaluate import CODES_NAMES, evaluate_all, evaluation_summary, random_baseline
from .fit import (HELD, activation_arrays, activations_meta, fit_plan, fit_stage, load_activations, sae_codes,
                  sae_config, sae_epochs, weights_key, write_activations)
from .inputs import (SCORE_BLOCK, SASRecOutputs, StageInputs, cached_hu, dictionary_sample, sasrec_key,
                     sasrec_outputs, score_blocks, stage_inputs, user_rows)
from .notebook import Run, open

__all__ = ["CODES_NAMES", "HELD", "Run", "SCORE_BLOCK", "SASRecOutputs", "StageInputs", "activation_arrays",
           "activations_meta", "cached_hu", "dictionary_sample", "evaluate_all", "evaluation_summary", "fit_plan",
           "fit_stage", "load_activations", "open", "random_baseline", "sae_codes", "sae_config", "sae_epochs",
           "sasrec_key", "sasrec_outputs", "score_blocks", "stage_inputs", "user_rows", "weights_key",
           "write_activations"]
