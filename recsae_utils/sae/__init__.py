"""The sparse autoencoder on SASRec's user vector h_u, one job per module: `model` (the config and the three
families), `sparse` (the top-k and the sparse autograd kernels), `losses` (FVU, AuxK, a batch's loss), `fit`
(the training loop) and `io` (codes, reconstructions, files). The public names are re-exported here, so
`from recsae_utils.sae import fit_sae` and `sae.fit_sae` read the same."""
from .fit import FitResult, data_fingerprint, epoch_generator, fit_sae, scheduled_lr, total_variance
from .io import encode_sparse, load_sae, random_sae, reconstruct, save_sae
from .losses import auxk_loss, batch_loss, fvu_loss, reconstruction_loss, sq_dev
from .model import FAMILIES, BatchTopKSAE, SAEConfig, TopKSAE, make_sae, matryoshka_prefixes
from .sparse import SelectedPreActs, SparseDecode, batch_topk, fast_topk, scatter_rows

__all__ = ["FAMILIES", "BatchTopKSAE", "FitResult", "SAEConfig", "SelectedPreActs", "SparseDecode", "TopKSAE",
           "auxk_loss", "batch_loss", "batch_topk", "data_fingerprint", "encode_sparse", "epoch_generator",
           "fast_topk", "fit_sae", "fvu_loss", "load_sae", "make_sae", "matryoshka_prefixes", "random_sae",
           "reconstruct", "reconstruction_loss", "save_sae", "scatter_rows", "scheduled_lr", "sq_dev",
           "total_variance"]
