"""Interpretation of an IVE: what each latent encodes, and whether the latents are independent.

Station ``ive -> interpret``: from encoder means of a corpus and its physical parameters,

- :mod:`.mi`: mutual information of two variables with Gaussian mixtures (GMM-MI), bootstrap errors;
- :mod:`.table`: :func:`mi_table` over all latent-latent and latent-parameter pairs (parallel);
- :mod:`.labels`: :func:`latent_labels` (e.g. ``"thetastar / H0"``) and :func:`check_disentangled`;
- :mod:`.traversal`: spectra along one latent at a time, plotted in cosmic-variance units;
- :mod:`.plots`: MI heatmaps;
- :mod:`.workflow`: :func:`interpret`, what ``latentinfer interpret MODEL --out DIR`` runs.
"""

from .labels import UNEXPLAINED, DisentanglementCheck, check_disentangled, latent_labels
from .mi import MIEstimate, MISettings, gaussian_mi, gmm_mi
from .plots import plot_mi_heatmap
from .table import MITable, mi_table
from .traversal import cosmic_variance, plot_traversals, run_traversal, traversal_change
from .workflow import interpret, load_encoded, prepare_data, update_card_labels

__all__ = [
    "UNEXPLAINED",
    "DisentanglementCheck",
    "MIEstimate",
    "MISettings",
    "MITable",
    "check_disentangled",
    "cosmic_variance",
    "gaussian_mi",
    "gmm_mi",
    "interpret",
    "latent_labels",
    "load_encoded",
    "mi_table",
    "plot_mi_heatmap",
    "plot_traversals",
    "prepare_data",
    "run_traversal",
    "traversal_change",
    "update_card_labels",
]
