"""Every figure of the notebooks and reports, in one report style (`reports.set_style`): `training` (stages
01-04: data, SASRec, the SAE fits and their evaluation), `concepts` (stage 05: concept cards, heatmaps,
profiles, label scores) and `interventions` (stages 06-07: steering and the yardstick). Import the module a
stage needs (`from recsae_utils.figures import training`): nothing is re-exported here, so a stage's key (pipeline.code_hash) follows only the figure code
that stage runs, and a change to a concept figure does not retrain SASRec."""
