"""SASRec's old address: the model lives in models/sasrec.py, one implementation of the base-model interface
(models/base.py). Kept so that `from recsae_utils.model import SASRec` keeps working."""
from .models.sasrec import Block, SASRec, SASRecConfig

__all__ = ["Block", "SASRec", "SASRecConfig"]
