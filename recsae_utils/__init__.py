"""recsae_utils: the thin helper package behind the recsae notebooks.

One module per stage: data, model, train, metrics, sae, concepts, labeling, reports.
Notebooks call these functions; tests call them too.
"""
__version__ = "0.1.0"
