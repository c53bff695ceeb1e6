"""Every figure of the notebooks and reports, in one report style (`reports.set_style`): `training` (stages
01-04: data, SASRec, the SAE fits and their evaluation) and `concepts` (stages 05-07: concept cards,
profiles, steering, the yardstick). Import the module a stage needs (`from recsae_utils.figures import
training`): nothing is re-exported here, so a stage's key (pipeline.code_hash) follows only the figure code
that stage runs, and a change to a concept figure does not retrain SASRec."""
